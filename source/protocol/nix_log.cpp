#include "ferry/protocol/nix_log.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "ferry/util/error.hpp"

namespace ferry::protocol {
namespace {

using json = nlohmann::json;

void add_fields(json& j, const std::vector<nix_log_field>& fields) {
    if (fields.empty()) return;
    auto& array = j["fields"] = json::array();
    for (const auto& f : fields) {
        if (const auto* n = std::get_if<std::uint64_t>(&f))
            array.push_back(*n);
        else
            array.push_back(std::get<std::string>(f));
    }
}

std::string line(const json& j) {
    // The arguments of Nix's JSONLogger::write.
    return "@nix " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

[[noreturn]] void refuse(std::string_view why) {
    throw failure(errc::bad_input, fmt::format("@nix log line: {}", why));
}

const json& member(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end()) refuse(fmt::format("no \"{}\"", key));
    return *it;
}

void require_unsigned(const json& j, const char* key) {
    // Nix casts these with nlohmann's get<>: a negative or fractional number or a
    // string would throw in the daemon.
    if (!member(j, key).is_number_unsigned()) refuse(fmt::format("\"{}\" is not an unsigned integer", key));
}

void require_string(const json& j, const char* key) {
    if (!member(j, key).is_string()) refuse(fmt::format("\"{}\" is not a string", key));
}

void require_fields(const json& j) {
    auto it = j.find("fields");
    if (it == j.end() || it->is_null()) return;
    if (!it->is_array()) refuse("\"fields\" is not an array");
    for (const auto& f : *it)
        if (!f.is_number_unsigned() && !f.is_string()) refuse("a field is neither a string nor an unsigned integer");
}

}  // namespace

std::string nix_log_start(std::uint64_t id, nix_verbosity level, nix_activity type, std::string_view text,
                          const std::vector<nix_log_field>& fields, std::uint64_t parent) {
    json j;
    j["action"] = "start";
    j["id"] = id;
    j["level"] = static_cast<std::uint64_t>(level);
    j["type"] = static_cast<std::uint64_t>(type);
    j["text"] = std::string(text);
    add_fields(j, fields);
    if (parent != 0) j["parent"] = parent;
    return line(j);
}

std::string nix_log_stop(std::uint64_t id) {
    json j;
    j["action"] = "stop";
    j["id"] = id;
    return line(j);
}

std::string nix_log_result(std::uint64_t id, nix_result type, const std::vector<nix_log_field>& fields) {
    json j;
    j["action"] = "result";
    j["id"] = id;
    j["type"] = static_cast<std::uint64_t>(type);
    add_fields(j, fields);
    return line(j);
}

std::string nix_log_msg(nix_verbosity level, std::string_view msg) {
    json j;
    j["action"] = "msg";
    j["level"] = static_cast<std::uint64_t>(level);
    j["msg"] = std::string(msg);
    return line(j);
}

void validate_nix_log_line(std::string_view text) {
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    if (text.substr(0, 5) != "@nix ") refuse("does not start with \"@nix \"");
    if (text.find('\n') != std::string_view::npos) refuse("contains a line break");
    auto j = json::parse(text.substr(5), nullptr, false);
    if (j.is_discarded()) refuse("not valid JSON");
    if (!j.is_object()) refuse("not a JSON object");
    require_string(j, "action");
    auto action = j["action"].get<std::string>();
    if (action == "start") {
        require_unsigned(j, "id");
        require_unsigned(j, "level");
        require_unsigned(j, "type");
        require_string(j, "text");
        require_fields(j);
    } else if (action == "stop") {
        require_unsigned(j, "id");
    } else if (action == "result") {
        require_unsigned(j, "id");
        require_unsigned(j, "type");
        require_fields(j);
    } else if (action == "msg") {
        require_unsigned(j, "level");
        require_string(j, "msg");
    } else if (action == "setPhase") {
        require_string(j, "phase");
    } else {
        refuse(fmt::format("unknown action \"{}\"", action));
    }
}

}  // namespace ferry::protocol
