"""The nginx + Lua router candidate (issue 16): nginx with Debian's Lua
module (libnginx-mod-http-lua, lua-resty-core's ngx.balancer), an upstream
whose `balancer_by_lua_block` picks the host's replica from a
`lua_shared_dict` that a loopback-only admin port updates at run time (what
Kubernetes' ingress-nginx does instead of reloading), with upstream
keepalive. Measured by bench/router_candidates.py against a plain nginx with
a static upstream and the HAProxy router: CPU per request, and clients (idle
and busy kept-alive ones, never retrying) across route changes.
"""
from __future__ import annotations

import http.client
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.router_candidates import HOST, idle_connections_across_changes, wrk
from core.settings import Settings
from router.haproxy import HAProxyRouter
from router.interface import Route
from router.nginx import _children
from tests.conftest import free_port


LUA_MODULES = "/usr/lib/nginx/modules"
LUA_ROUTING = """
  lua_shared_dict routes 16m;
  init_by_lua_block { balancer = require "ngx.balancer"; parsed = {} }
  upstream dynamic {
    server 0.0.0.1;  # placeholder: the peer is chosen in Lua
    balancer_by_lua_block {
      local host, raw = ngx.ctx.host, ngx.ctx.peers
      local c = parsed[host]
      if not c or c.raw ~= raw then  -- the dict changed: parse once per worker
        c = {raw = raw, i = 0}
        for ip, port in raw:gmatch("([^%s:]+):(%d+)") do c[#c + 1] = {ip, tonumber(port)} end
        parsed[host] = c
      end
      c.i = c.i % #c + 1
      local ok, err = balancer.set_current_peer(c[c.i][1], c[c.i][2])
      if not ok then ngx.log(ngx.ERR, err); return ngx.exit(502) end
    }
    keepalive 32;
  }
  server {
    listen 127.0.0.1:ADMIN;  # the admin endpoint: loopback only
    allow 127.0.0.1; deny all;
    location = /routes {
      content_by_lua_block {
        local host = ngx.var.arg_host
        if ngx.req.get_method() == "DELETE" then ngx.shared.routes:delete(host)
        else
          ngx.req.read_body()
          local ok, err = ngx.shared.routes:set(host, ngx.req.get_body_data() or "")
          if not ok then ngx.status = 500; ngx.say(err); return end
        end
        ngx.say("ok")
      }
    }
  }
"""
LUA_ACCESS = """access_by_lua_block {
        local host = ngx.var.host
        local peers = ngx.shared.routes:get(host)
        if not peers then return ngx.exit(404) end
        ngx.ctx.host, ngx.ctx.peers = host, peers
      }"""


def nginx_proxy(root: Path, upstream: int, lua: bool) -> tuple[subprocess.Popen, int, int, Path]:
    """nginx, one worker, the router's forwarded headers and pooled upstream
    connections (`keepalive 32`), either with a static `upstream` (the plain
    peer: a route change is an edit and a reload) or with the Lua balancer
    reading the host's replicas from a shared dict that the admin port
    updates at run time. Returns (process, port, admin port, config)."""
    port, admin = free_port(), free_port()
    (root / "logs").mkdir(parents=True)
    conf = root / "nginx.conf"
    modules = (f"load_module {LUA_MODULES}/ndk_http_module.so;\n"
               f"load_module {LUA_MODULES}/ngx_http_lua_module.so;\n") if lua else ""
    conf.write_text(f"""{modules}daemon off; worker_processes 1; pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  {LUA_ROUTING.replace("ADMIN", str(admin)) if lua else f"upstream static {{ server 127.0.0.1:{upstream}; keepalive 32; }}"}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      {LUA_ACCESS if lua else ""}
      proxy_pass http://{"dynamic" if lua else "static"};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Request-Start "t=$msec";
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", f"{root}/", "-c", str(conf), "-e", f"{root}/logs/error.log"])
    time.sleep(0.5)
    if proc.poll() is not None:
        sys.exit(f"nginx did not start: {(root / 'logs/error.log').read_text()[-2000:]}")
    return proc, port, admin, conf


def lua_set(admin: int, host: str, peers: list[int]) -> None:
    """The admin endpoint: the host's replicas, replaced at run time."""
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    c.request("POST", f"/routes?host={host}", body=" ".join(f"127.0.0.1:{p}" for p in peers))
    r = c.getresponse()
    assert r.status == 200, r.read()
    c.close()


def live_clients_across_changes(port: int, change, changes: int = 10, clients: int = 4) -> dict:
    """Kept-alive clients sending requests back to back (no retry) while the
    route changes every 0.2 s. Counts requests, failed requests (an error or
    not 200) and client connections that were closed (a new socket was
    needed: http.client reconnects when the server closed it)."""
    stop = threading.Event()
    counts = {"requests": 0, "failed": 0, "closed": 0}
    lock = threading.Lock()

    def client() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        sock, mine = None, {"requests": 0, "failed": 0, "closed": 0}
        while not stop.is_set():
            mine["requests"] += 1
            try:
                c.request("GET", "/", headers={"Host": HOST})
                if sock is not None and c.sock is not sock:
                    mine["closed"] += 1
                sock = c.sock
                r = c.getresponse()
                r.read()
                mine["failed"] += r.status != 200
            except (OSError, http.client.HTTPException):
                mine["failed"] += 1
                mine["closed"] += 1
                c.close()
                sock = None
        c.close()
        with lock:
            for k, v in mine.items():
                counts[k] += v
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    for _ in range(changes):
        change()
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(10)
    return counts


def bench_lua(tmp: Path, up: int, up2: int, seconds: int, rounds: int) -> dict:
    """The nginx + Lua candidate against the plain nginx (static upstream)
    and the HAProxy router, the three alternated within each round: CPU per
    request (min/median/max over the rounds) and connection behaviour across
    route changes (the plain nginx's change is an edited config + reload)."""
    ng, ng_port, _, ng_conf = nginx_proxy(tmp / "lua-peer", up, lua=False)
    lua, lua_port, admin, _ = nginx_proxy(tmp / "lua", up, lua=True)
    s = Settings(data_dir=tmp / "lua-haproxy", router_port=free_port(), base_domain="localhost",
                 router_workers=1)
    ha = HAProxyRouter(s, https_port=0)
    ha.start()
    result: dict = {}
    try:
        lua_set(admin, HOST, [up])
        ha.set_route(Route("app", [HOST], [("127.0.0.1", up)]))
        targets = {"nginx": (ng_port, lambda: {ng.pid} | _children(ng.pid)),
                   "nginx+lua": (lua_port, lambda: {lua.pid} | _children(lua.pid)),
                   "haproxy": (s.router_port, lambda: {ha.pid()} | _children(ha.pid()))}
        runs = {(n, m): [] for n in targets for m in ("keepalive", "new_conn")}
        for _ in range(rounds):
            for mode in ("keepalive", "new_conn"):
                for name, (port, pids) in targets.items():
                    res = wrk(port, seconds, mode == "new_conn", pids())
                    if res["non2xx"]:
                        print(f"  {name} {mode}: {res['non2xx']} non-2xx", flush=True)
                    runs[name, mode].append(res)
        for (name, mode), rs in runs.items():
            cpu = sorted(r["cpu_us_per_req"] for r in rs)
            result[f"{name} {mode}"] = {"cpu_us": [round(cpu[0], 1), round(statistics.median(cpu), 1), round(cpu[-1], 1)],
                                        "rps_median": round(statistics.median(r["rps"] for r in rs))}
            if name != "nginx":
                ratio = sorted(a["cpu_us_per_req"] / b["cpu_us_per_req"] for a, b in zip(rs, runs["nginx", mode]))
                result[f"{name} {mode}"]["cpu_vs_nginx"] = [round(ratio[0], 2), round(statistics.median(ratio), 2),
                                                            round(ratio[-1], 2)]
        flip = [0]

        def lua_change() -> None:
            flip[0] ^= 1
            lua_set(admin, HOST, [up2] if flip[0] else [up])

        def ha_change() -> None:
            flip[0] ^= 1
            ha.set_route(Route("app", [HOST], [("127.0.0.1", up2 if flip[0] else up)]))

        def nginx_change() -> None:  # a static upstream changes by an edit and a reload
            flip[0] ^= 1
            text = ng_conf.read_text()
            ng_conf.write_text(text.replace(f":{up if flip[0] else up2};", f":{up2 if flip[0] else up};"))
            ng.send_signal(signal.SIGHUP)
        for name, port, change in (("nginx+lua", lua_port, lua_change), ("haproxy", s.router_port, ha_change),
                                   ("nginx", ng_port, nginx_change)):
            result[f"{name} live clients"] = live_clients_across_changes(port, change)
            result[f"{name} idle clients (failed, requests)"] = idle_connections_across_changes(port, change)
    finally:
        ha.stop()
        for proc in (ng, lua):
            proc.send_signal(signal.SIGQUIT)
            proc.wait(10)
    return result
