defmodule Counter.MixProject do
  use Mix.Project

  # Bump the version (and change lib/counter.ex) to push a hot upgrade:
  # the build makes the appup and relup from the previous release.
  def project do
    [
      app: :counter,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: [],
      releases: [counter: [include_executables_for: [:unix]]]
    ]
  end

  # :sasl is what release_handler (hot upgrades) needs.
  def application do
    [extra_applications: [:logger, :inets, :sasl], mod: {Counter.Application, []}]
  end
end
