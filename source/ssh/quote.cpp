#include "ferry/ssh/quote.hpp"

namespace ferry::ssh {
namespace {

bool safe(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("_@%+:,./-").find(c) != std::string_view::npos;
}

}  // namespace

std::string shell_quote(std::string_view word) {
    bool plain = !word.empty();
    for (char c : word) plain = plain && safe(c);
    if (plain) return std::string(word);
    std::string out = "'";
    for (char c : word) {
        // Inside single quotes nothing is special but ' itself: close, escape, reopen.
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    out += '\'';
    return out;
}

std::string shell_command(std::span<const std::string> argv) {
    std::string out;
    for (const auto& word : argv) {
        if (!out.empty()) out += ' ';
        out += shell_quote(word);
    }
    return out;
}

}  // namespace ferry::ssh
