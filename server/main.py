"""`shipway server`: every part in one Twisted reactor.

Blocking work (database, Docker, files) runs in threads; the reactor thread
only moves bytes. Each part is built by one factory named here, so this file
is the one place that shows how the system is wired.
"""
from __future__ import annotations

import os
import signal
import sys

from twisted.internet import reactor, threads
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from server.services import Services
from core.settings import Settings

log = Logger()


def make_router(settings: Settings):
    """The router the settings name: HAProxy changed at run time (the
    default), or the former nginx router (reloaded per change), kept as the
    benchmarks' peer."""
    if settings.router_proxy == "nginx":
        from router.nginx import NginxRouter

        return NginxRouter(settings)
    from router.haproxy import HAProxyRouter

    return HAProxyRouter(settings)


# --- issue 15 item 5: `runner: memory` / `builder: memory` (no Docker) -------
def make_builder(settings: Settings):
    """The builder the settings name: Docker (the default) or in-memory
    (builder/memory.py: the pushed tree with its Procfile as the slug)."""
    if settings.builder == "memory":
        from builder.memory import MemoryBuilder

        return MemoryBuilder(settings)
    from builder.docker_builder import DockerBuilder

    return DockerBuilder(settings)


def make_runner(settings: Settings, slugs, router, state):
    """The runner the settings name: Docker (the default) or in-memory
    (runner/memory.py: replicas as records, for API tests without Docker;
    it routes nothing, as nothing of it listens)."""
    if settings.runner == "memory":
        from runner.memory import MemoryRunner

        return MemoryRunner(state=state, slugs=slugs)
    from runner.docker_runner import DockerRunner

    return DockerRunner(settings, slugs=slugs, router=router, state=state)
# --- end issue 15 item 5 ---


def build_services(settings: Settings) -> Services:
    """Construct every part; no listening, no Docker calls yet."""
    from controller.deploys import Deployer, DesiredState
    from controller.store import open_controller
    from hooks.pipeline import Pipeline
    from logger.store import LogStore
    from storage.factory import make_slug_store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    controller = open_controller(settings)
    slugs = make_slug_store(settings)
    builder = make_builder(settings)
    router = make_router(settings)
    from server.tls import with_https  # issue 16 item 3: the https frontend

    router = with_https(router, settings)
    runner = make_runner(settings, slugs, router, DesiredState(settings, controller))
    logs = LogStore(settings.data_dir / "logs.sqlite3",  # issue 18: durable, bounded
                    bytes_per_app=settings.log_bytes_per_app,
                    subscribers_per_app=settings.log_followers_per_app)
    from controller.drains import Drains, rules_for  # issue 18 item 4: log drains
    from logger.drains import DrainHub, tls_context

    hub = DrainHub(rules_for(settings), tls_context(settings.drain_ca_bundle),
                   settings.drain_buffer_lines)
    logs.tap(hub.tap)
    logs.drains = Drains(controller, hub)
    controller.on_destroy(lambda app: hub.set(app.name, []))
    controller.set_deployer(Deployer(settings, controller=controller, runner=runner,
                                     logs=logs))
    pipeline = Pipeline(settings, controller=controller, builder=builder, slugs=slugs,
                        logs=logs, locks=controller.locks)  # one core.locks.Locks
    services = Services(settings=settings, controller=controller, slugs=slugs,
                        builder=builder, router=router, runner=runner, pipeline=pipeline,
                        logs=logs)
    controller.on_destroy(lambda app: logs.drop(app.name))
    from controller.maintenance import RouteOverlays  # issue 16: states go with the app

    controller.on_destroy(lambda app: RouteOverlays(controller, router).forget(app.name))
    controller.on_destroy(lambda app: slugs.delete_prefix(f"{app.name}/"))
    controller.on_destroy(lambda app: builder.remove_cache(app.name))
    from gitd.repos import RepoStore  # noqa: E402 (the repo goes with the app)
    controller.on_destroy(lambda app: RepoStore(settings.data_dir).remove(app.name))
    return services


def listen(services: Services) -> None:
    """Open the HTTP (API, git smart-HTTP, slug downloads) and SSH ports."""
    from gitd.ssh import make_ssh_factory
    from server.web import make_root, make_site

    settings = services.settings
    site = make_site(make_root(services), settings.limits)
    from server.tls import listen_http  # issue 16 item 4: HTTPS with --tls-cert/--tls-key

    listen_http(settings, site)
    reactor.listenTCP(settings.ssh_port, make_ssh_factory(services),
                      interface=settings.bind_host)
    if settings.runner == "docker":  # slugs and SSH keys for run containers
        from runner.gateway import listen_gateway
        from storage.http import make_slug_resource

        controller = services.controller
        # The Docker runner's slugs (its host cache of a store elsewhere).
        local = getattr(services.runner, "local_slugs", None)
        listen_gateway(settings, make_slug_resource(services.slugs, local),
                       lambda app: controller.authorized_keys(controller.app_by_name(app)),
                       make_site)


def _start_router_lines(services: Services) -> None:
    """Issue 18: HAProxy's access lines (pulled from its ring over the admin
    socket) become each app's router lines."""
    from router.haproxy import HAProxyRouter

    router = services.router
    if services.logs is None or not isinstance(router, HAProxyRouter):
        return
    from logger.router_lines import RouterLogReceiver

    receiver = RouterLogReceiver(router.layout.admin_socket, services.logs,
                                 router.app_for_backend)
    receiver.start()  # connects (again) whenever HAProxy answers
    reactor.callFromThread(reactor.addSystemEventTrigger, "before", "shutdown", receiver.stop)


def _start_background(services: Services, interrupted: list | None = None) -> None:
    def boot() -> None:
        services.builder.cleanup_leftovers()
        _start_router_lines(services)  # issue 18
        try:
            services.router.start()
        except Exception:  # noqa: BLE001 (supervision starts it again)
            log.failure("shipway: the router did not start; supervision will retry")
        try:  # Issue 16: maintenance states and canaries, from the database.
            from controller.maintenance import RouteOverlays

            RouteOverlays(services.controller, services.router).restore()
        except Exception:  # noqa: BLE001 (the apps are served all the same)
            log.failure("shipway: maintenance states and canaries were not restored")
        from server.tls import start_certificates  # issue 16 item 3 (ACME)

        reactor.callFromThread(start_certificates, services)
        # issue 15 item 8: once the router's routes are known and before the
        # runner adopts (it keeps the replicas of the current release).
        if interrupted:
            from controller.settle import settle

            settle(services.controller, interrupted, services.runner.serving_version)
        services.runner.start()
        if collector is not None:
            collector.start()
        if services.logs is not None and services.logs.drains is not None:
            services.logs.drains.load_all()  # issue 18: drains forward from start-up

    collector = None
    if services.settings.runner == "docker" and services.logs is not None:
        from logger.docker_collector import DockerLogCollector

        collector = DockerLogCollector(services.settings, services.logs)
        reactor.addSystemEventTrigger("before", "shutdown", collector.stop)

    if services.logs is not None:  # issue 18: the last queued lines reach the disk
        reactor.addSystemEventTrigger("after", "shutdown", services.logs.close)
    d = threads.deferToThread(boot)
    d.addCallback(lambda _: _freeze_heap())
    d.addCallback(lambda _: log.info("shipway: ready"))
    d.addErrback(lambda f: log.failure("shipway: start-up failed", f))


def _freeze_heap() -> None:
    """Issue 18: a full garbage collection holds the GIL, so the reactor,
    for as long as it scans every object; with start-up's ~150,000 objects
    (modules, Twisted, Docker's client) that was 0.1-0.2 s at a time during
    a log burst (bench/logs.py). Objects made before "ready" live for the
    process: frozen, no collection scans them again."""
    import gc

    gc.collect()
    gc.freeze()


def run(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT. Run containers and the proxy are left running
    for the next start to adopt, after a crash and after a clean stop alike:
    restarting or upgrading Shipway never takes an app offline (a clean stop
    ends supervision and builds; `shipway server stop-router` stops the proxy)."""
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    services = build_services(settings)
    # Before the ports open: no push of this process can be in flight yet.
    # Releases left deploying are settled once the runner can say which
    # release serves (issue 15 item 8, controller/settle.py).
    from controller.settle import interrupted_deploys

    interrupted = interrupted_deploys(services.controller)
    reactor.suggestThreadPoolSize(32)
    # Issue 18: the reactor shares the GIL with the log threads (collector,
    # fan-out, SQLite writer, drains). Each time it comes back from a socket
    # call it waits up to one switch interval for a busy thread to let go,
    # and one API call makes dozens of such calls: 5 ms (Python's default)
    # made another call take up to ~0.5 s during a 10 MB/s log flood.
    sys.setswitchinterval(0.001)
    listen(services)
    reactor.callWhenRunning(_start_background, services, interrupted)
    reactor.addSystemEventTrigger("before", "shutdown", services.runner.stop)
    reactor.addSystemEventTrigger("before", "shutdown",
                                  lambda: services.builder.close(timeout=30))
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run(installSignalHandlers=False)


def main(argv: list[str] | None = None) -> None:
    """`python -m server`: the same as `shipway server` (for tests and scripts)."""
    from server.command import server

    server.main(args=list(argv if argv is not None else sys.argv[1:]),
                prog_name="shipway server")
