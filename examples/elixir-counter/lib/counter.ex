defmodule Counter do
  @moduledoc """
  A GenServer counting requests. Version 1 keeps a bare integer; a later
  version keeps a map, and its code_change/3 migrates the running state.
  """
  use GenServer

  def start_link(_), do: GenServer.start_link(__MODULE__, 0, name: __MODULE__)
  def hit, do: GenServer.call(__MODULE__, :hit)

  @impl true
  def init(count), do: {:ok, count}

  @impl true
  def handle_call(:hit, _from, count) do
    {:reply, "counter v1 node=#{node()} pid=#{inspect(self())} count=#{count + 1} nodes=#{length(Node.list())}\n",
     count + 1}
  end

  @impl true
  def code_change(_old, state, _extra), do: {:ok, state}
end

defmodule Counter.Handler do
  @moduledoc "An :inets httpd callback module answering every request."
  def unquote(:do)(_mod) do
    body = Counter.hit()
    {:proceed, [{:response, {:response, [code: 200, content_type: ~c"text/plain",
                                         content_length: Integer.to_charlist(byte_size(body))],
                             String.to_charlist(body)}}]}
  end
end

defmodule Counter.Cluster do
  @moduledoc """
  Connects to the app's other replicas once: every address the app's
  discovery name (SHIPWAY_CLUSTER_DNS, a Docker network alias) resolves to, as
  libcluster's DNSPoll strategy would.
  """
  use Task

  def start_link(_), do: Task.start_link(&connect/0)

  def connect do
    query = System.get_env("SHIPWAY_CLUSTER_DNS", "")
    base = System.get_env("LIBCLUSTER_KUBERNETES_NODE_BASENAME", "")

    if query != "" and base != "" and Node.alive?(), do: poll(query, base)
  end

  # For as long as the node lives, as DNSPoll does: a replica that boots
  # late (scale, replacement) is found whenever it appears. Called through
  # the module, so a hot upgrade that reloads this module moves the loop
  # onto the new code instead of purging it.
  @doc false
  def poll(query, base) do
    for ip <- :inet_res.lookup(String.to_charlist(query), :in, :a) do
      Node.connect(:"#{base}@#{:inet.ntoa(ip)}")
    end

    Process.sleep(1000)
    __MODULE__.poll(query, base)
  end
end

defmodule Counter.Application do
  @moduledoc false
  use Application

  def start(_type, _args) do
    port = String.to_integer(System.get_env("PORT", "4000"))
    Application.put_env(:kernel, :inet_default_listen_options, nodelay: true)
    {:ok, _} =
      :inets.start(:httpd,
        port: port, server_name: ~c"counter", server_root: ~c"/tmp",
        document_root: ~c"/tmp", bind_address: :any, modules: [Counter.Handler])

    Supervisor.start_link([Counter, Counter.Cluster], strategy: :one_for_one,
                          name: Counter.Supervisor)
  end
end
