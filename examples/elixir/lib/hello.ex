defmodule Hello do
  @moduledoc "The page: which app, which release, which config."

  @marker "v1"

  def marker, do: @marker

  def body do
    version = System.get_env("APP_VERSION", "unknown")
    greeting = System.get_env("GREETING", "")
    "Hello from Elixir #{@marker} (release #{version}) #{greeting}\n"
  end
end

defmodule Hello.Handler do
  @moduledoc "An :inets httpd callback module (`do/1`) answering every request."

  # `do` is an Elixir keyword, hence unquote.
  def unquote(:do)(_mod_record) do
    body = Hello.body()
    {:proceed, [{:response, {:response, [code: 200, content_type: ~c"text/plain",
                                         content_length: Integer.to_charlist(byte_size(body))],
                             String.to_charlist(body)}}]}
  end
end

defmodule Hello.Application do
  @moduledoc false
  use Application

  def start(_type, _args) do
    port = String.to_integer(System.get_env("PORT", "4000"))
    # httpd writes a response's headers and its body separately: without
    # TCP_NODELAY the body waits for the client's delayed ACK (40 ms) on
    # every kept-alive connection, and nginx keeps its connections alive.
    # httpd takes no socket options here, but its sockets take these.
    Application.put_env(:kernel, :inet_default_listen_options, nodelay: true)
    {:ok, pid} =
      :inets.start(:httpd,
        port: port,
        server_name: ~c"hello",
        server_root: ~c"/tmp",
        document_root: ~c"/tmp",
        bind_address: :any,
        modules: [Hello.Handler]
      )

    children = [{Task, fn -> Process.monitor(pid); receive do: (_ -> :ok) end}]
    Supervisor.start_link(children, strategy: :one_for_one, name: Hello.Supervisor)
  end
end
