# `mix compile`, then the freshly compiled modules put into a release that
# `mix release` built earlier from the same project, as `mix release` would:
# the build's ebin -> the release's lib/APP-VSN/ebin, the consolidated
# protocols -> releases/VSN/consolidated, each beam stripped to the chunks
# the release's copy of it has (mix strips them by default; `keep:` and
# `strip_beams: false` carry over that way). One BEAM for both: starting one
# is a good part of a small build's time.
#
# Usage (in the project): elixir compile_into_release.exs BUILD_EBIN
#   BUILD_CONSOLIDATED REL_EBIN REL_CONSOLIDATED CACHED_EBIN CACHED_CONSOLIDATED
# Exit 3: not the same modules or application file (a module added or
# removed, a new version): the caller builds the whole release instead.
# A file that changes is unlinked and written anew, never written into: the
# release's files are hard links into the cached release (CACHED_*), where
# the new file is then linked in its place, so that the cache holds this
# release again without linking the whole tree anew.
[build_ebin, build_consolidated, rel_ebin, rel_consolidated, cached_ebin, cached_consolidated] =
  System.argv()

Mix.start()
Mix.CLI.main(["compile"])

names = fn dir -> dir |> File.ls!() |> Enum.sort() end

same_set! = fn from, to ->
  if names.(from) != names.(to) do
    IO.puts("the set of modules changed: building the whole release")
    System.halt(3)
  end
end

chunk_ids = fn binary ->
  {:ok, _, chunks} = :beam_lib.all_chunks(binary)
  Enum.map(chunks, fn {id, _} -> List.to_string(id) end)
end

update = fn from, to, cached ->
  Enum.count(names.(from), fn name ->
    new = File.read!(Path.join(from, name))
    target = Path.join(to, name)
    old = File.read!(target)

    wanted =
      cond do
        not String.ends_with?(name, ".beam") -> new
        chunk_ids.(old) == chunk_ids.(new) -> new
        true -> elem(Mix.Release.strip_beam(new, keep: chunk_ids.(old)), 1)
      end

    if wanted != old do
      File.rm!(target)
      File.write!(target, wanted)
      in_cache = Path.join(cached, name)
      File.rm!(in_cache)
      with {:error, _} <- File.ln(target, in_cache), do: File.cp!(target, in_cache)
      true
    else
      false
    end
  end)
end

same_set!.(build_ebin, rel_ebin)
app_files = Enum.filter(names.(build_ebin), &String.ends_with?(&1, ".app"))

unless Enum.all?(app_files, &(File.read!(Path.join(build_ebin, &1)) == File.read!(Path.join(rel_ebin, &1)))) do
  IO.puts("the application file changed: building the whole release")
  System.halt(3)
end

consolidated? = File.dir?(build_consolidated)

if consolidated? != File.dir?(rel_consolidated) do
  IO.puts("protocol consolidation changed: building the whole release")
  System.halt(3)
end

if consolidated?, do: same_set!.(build_consolidated, rel_consolidated)
changed =
  update.(build_ebin, rel_ebin, cached_ebin) +
    if(consolidated?, do: update.(build_consolidated, rel_consolidated, cached_consolidated), else: 0)

IO.puts("#{changed} file(s) of the release updated")
