// A small S-expression reader for machines.scm: enough Scheme syntax to read data.
// Accepts strings (\" \\ \n \t \r \a \f \v \0 \xHH; and line continuations), numbers
// (22, -1, 2., 1.5, .5, 1e3, #e/#i not supported), #t/#f/#true/#false, symbols, '
// (quote), ` , ,@ are rejected, lists in () or [], ';' line comments, #| |# block
// comments (nested), #; datum comments. Every datum carries its line:column.
// Errors throw ferry::failure(errc::bad_input) "file:line:col: ...".
#pragma once

#include <ferry/machines/machine.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::machines::sexpr {

enum class kind { list, string, number, boolean, symbol };

struct datum {
    kind type = kind::list;
    source_position at;
    std::string text;          // string contents, symbol name, number as written
    double number = 0;
    bool exact = false;        // number written without '.' or exponent
    bool boolean = false;
    std::vector<datum> items;  // list elements

    bool is_symbol(std::string_view name) const { return type == kind::symbol && text == name; }
    // Compact written form for messages, cut to `max` characters.
    std::string show(std::size_t max = 60) const;
};

// Reads every top-level datum of `text`. Nesting is bounded (256) so hostile input
// cannot exhaust the stack.
std::vector<datum> read_all(std::string_view text, const std::string& file);

}  // namespace ferry::machines::sexpr
