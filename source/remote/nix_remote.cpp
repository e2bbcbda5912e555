#include "ferry/remote/nix_remote.hpp"

#include "ferry/codec/commands.hpp"
#include "ferry/ssh/quote.hpp"
#include "ferry/store/store_path.hpp"

namespace ferry::remote {

namespace {

std::string program_with_store(const nix_remote_options& o) {
    std::string cmd = ssh::shell_quote(o.remote_program);
    if (!o.remote_store.empty()) cmd += " --store " + ssh::shell_quote(o.remote_store);
    return cmd;
}

std::string in_sh(const std::string& script) { return "sh -c " + ssh::shell_quote(script); }

}  // namespace

void check_store_paths(const nix_remote_options& o, const std::vector<std::string>& paths) {
    for (const auto& p : paths) store::parse_store_path(o.store_dir, p);
}

std::string serve_command(const nix_remote_options& o) { return program_with_store(o) + " --serve --write"; }

std::string compressed_serve_command(const nix_remote_options& o, codec::codec_kind kind) {
    if (kind == codec::codec_kind::none) return serve_command(o);
    return in_sh(codec::decompress_command(kind) + " | " + serve_command(o));
}

std::string import_command(const nix_remote_options& o, codec::codec_kind kind) {
    std::string import = program_with_store(o) + " --import";
    if (kind == codec::codec_kind::none) return import;
    return in_sh(codec::decompress_command(kind) + " | " + import);
}

std::string export_command(const nix_remote_options& o, const std::vector<std::string>& paths,
                           const codec::codec_spec& codec, unsigned threads) {
    check_store_paths(o, paths);
    std::string exp = program_with_store(o) + " --export";
    for (const auto& p : paths) exp += " " + ssh::shell_quote(p);
    if (codec.kind == codec::codec_kind::none) return exp;
    // POSIX sh has no pipefail: say the export's failure on stderr instead.
    return in_sh("{ " + exp + " || echo \"ferry: export failed (status $?)\" >&2; } | " +
                 codec::compress_command(codec, threads));
}

}  // namespace ferry::remote
