#include <ferry/machines/guix_machines.hpp>

#include <ferry/machines/sexpr.hpp>
#include <ferry/util/error.hpp>

#include <cmath>
#include <map>
#include <variant>

namespace ferry::machines {
namespace {

using sexpr::datum;
using sexpr::kind;

constexpr const char* supported_forms =
    "machines.scm is read as data: expected (list (build-machine ...) ...), '(...), or the "
    "((@ (srfi srfi-1) append-map) (lambda (entry) ...) (list ...)) form Guix System writes";

[[noreturn]] void fail(const datum& d, const std::string& what) {
    throw failure(errc::bad_input, d.at.str() + ": " + what);
}

// A quoted or (list ...) value: what a field may hold after evaluation.
struct value {
    const datum* src = nullptr;            // for positions
    std::variant<std::monostate, std::vector<value>, machine> v;  // monostate: an atom (see src)
};

bool is_head(const datum& d, std::string_view name) {
    return d.type == kind::list && !d.items.empty() && d.items[0].is_symbol(name);
}

std::string type_name(const datum& d) {
    switch (d.type) {
        case kind::string: return "a string";
        case kind::number: return "a number";
        case kind::boolean: return "a boolean";
        case kind::symbol: return "the symbol '" + d.text + "'";
        case kind::list: return "the expression " + d.show();
    }
    return "?";
}

// --- field values --------------------------------------------------------------

const datum& expect_string(const datum& d, const std::string& field) {
    if (d.type != kind::string) fail(d, "field '" + field + "' is " + type_name(d) + "; expected a string");
    return d;
}

double expect_number(const datum& d, const std::string& field) {
    if (d.type != kind::number) fail(d, "field '" + field + "' is " + type_name(d) + "; expected a number");
    return d.number;
}

long expect_integer(const datum& d, const std::string& field, long lo, long hi) {
    double v = expect_number(d, field);
    if (!d.exact || v != std::floor(v) || v < static_cast<double>(lo) || v > static_cast<double>(hi))
        fail(d, "field '" + field + "' is " + d.text + "; expected an integer from " + std::to_string(lo) + " to " +
                    std::to_string(hi));
    return static_cast<long>(v);
}

// A list of strings: (list "a" "b"), '("a" "b"), '().
std::vector<std::string> expect_string_list(const datum& d, const std::string& field) {
    const std::vector<datum>* items = nullptr;
    std::size_t first = 0;
    if (is_head(d, "list")) {
        items = &d.items;
        first = 1;
    } else if (is_head(d, "quote") && d.items.size() == 2 && d.items[1].type == kind::list) {
        items = &d.items[1].items;
    } else {
        fail(d, "field '" + field + "' is " + type_name(d) + "; expected a list of strings: (list \"a\" ...) or '(\"a\" ...)");
    }
    std::vector<std::string> out;
    for (std::size_t k = first; k < items->size(); ++k) out.push_back(expect_string((*items)[k], field).text);
    return out;
}

machine eval_build_machine(const datum& form) {
    machine m;
    m.kind = flavour::guix;
    m.origin = form.at;
    m.port = 22;
    bool have_name = false, have_user = false, have_key = false, have_systems = false, have_system = false;
    std::map<std::string, const datum*> seen;
    for (std::size_t k = 1; k < form.items.size(); ++k) {
        const datum& f = form.items[k];
        if (f.type != kind::list || f.items.size() != 2 || f.items[0].type != kind::symbol)
            fail(f, "in build-machine: got " + type_name(f) + "; expected a field clause (field-name value)");
        const std::string& name = f.items[0].text;
        const datum& v = f.items[1];
        if (seen.count(name)) fail(f, "field '" + name + "' given twice (first at " + seen[name]->at.str() + ")");
        seen[name] = &f;
        if (name == "name") { m.host = expect_string(v, name).text; have_name = true; }
        else if (name == "port") m.port = static_cast<std::uint16_t>(expect_integer(v, name, 1, 65535));
        else if (name == "systems") { m.systems = expect_string_list(v, name); have_systems = true; }
        else if (name == "system") { have_system = true; if (!have_systems) m.systems = {expect_string(v, name).text}; else expect_string(v, name); }
        else if (name == "user") { m.user = expect_string(v, name).text; have_user = true; }
        else if (name == "private-key") m.identity = expect_string(v, name).text;
        else if (name == "host-key") { m.host_key = expect_string(v, name).text; have_key = true; }
        else if (name == "compression") m.compression = expect_string(v, name).text;
        else if (name == "compression-level") m.compression_level = static_cast<int>(expect_integer(v, name, 0, 9));
        else if (name == "daemon-socket") m.daemon_socket = expect_string(v, name).text;
        else if (name == "overload-threshold") {
            if (v.type == kind::boolean && !v.boolean) m.overload_threshold.reset();
            else if (v.type == kind::number) m.overload_threshold = v.number;
            else fail(v, "field 'overload-threshold' is " + type_name(v) + "; expected a number or #f");
        }
        else if (name == "parallel-builds") m.max_jobs = static_cast<unsigned>(expect_integer(v, name, 0, 1 << 20));
        else if (name == "speed") {
            double s = expect_number(v, name);
            if (!(s >= 0) || !std::isfinite(s)) fail(v, "field 'speed' is " + v.text + "; expected a number >= 0");
            m.speed = s;
        }
        else if (name == "features") { auto fs = expect_string_list(v, name); m.supported_features = {fs.begin(), fs.end()}; }
        else if (name == "location") { /* innate in Guix; any datum accepted, not used */ }
        else
            fail(f.items[0], "unknown build-machine field '" + name +
                                 "'; expected one of name port systems system user private-key host-key compression "
                                 "compression-level daemon-socket overload-threshold parallel-builds speed features");
    }
    auto missing = [&](const char* what) {
        fail(form, std::string("build-machine") + (have_name ? " '" + m.host + "'" : std::string()) +
                       " lacks the required field '" + what + "'");
    };
    if (!have_name) missing("name");
    if (!have_systems && !have_system) missing("systems");
    if (!have_user) missing("user");
    if (!have_key) missing("host-key");
    return m;
}

// The lambda Guix System writes: (lambda (X) (if (build-machine? X) (list X) X)).
bool is_generated_lambda(const datum& d) {
    if (!is_head(d, "lambda") || d.items.size() != 3) return false;
    const datum& params = d.items[1];
    if (params.type != kind::list || params.items.size() != 1 || params.items[0].type != kind::symbol) return false;
    const std::string& x = params.items[0].text;
    const datum& body = d.items[2];
    return is_head(body, "if") && body.items.size() == 4 && is_head(body.items[1], "build-machine?") &&
           body.items[1].items.size() == 2 && body.items[1].items[1].is_symbol(x) && is_head(body.items[2], "list") &&
           body.items[2].items.size() == 2 && body.items[2].items[1].is_symbol(x) && body.items[3].is_symbol(x);
}

bool is_append_map_head(const datum& d) {
    return d.type == kind::list && d.items.size() == 3 && d.items[0].is_symbol("@") && d.items[1].type == kind::list &&
           d.items[1].items.size() == 2 && d.items[1].items[0].is_symbol("srfi") &&
           d.items[1].items[1].is_symbol("srfi-1") && d.items[2].is_symbol("append-map");
}

value eval(const datum& d, int depth);

std::vector<value> eval_list_items(const datum& d, std::size_t first, int depth) {
    std::vector<value> out;
    for (std::size_t k = first; k < d.items.size(); ++k) out.push_back(eval(d.items[k], depth + 1));
    return out;
}

value eval(const datum& d, int depth) {
    value r;
    r.src = &d;
    if (d.type != kind::list) {
        if (d.type == kind::symbol)
            fail(d, "unbound or unsupported variable '" + d.text + "'; " + supported_forms);
        return r;  // self-evaluating atom
    }
    if (d.items.empty()) fail(d, "() is not a valid expression; write '() for the empty list");
    const datum& head = d.items[0];
    if (head.is_symbol("list")) {
        r.v = eval_list_items(d, 1, depth);
        return r;
    }
    if (head.is_symbol("quote")) {
        if (d.items.size() != 2) fail(d, "quote takes one datum");
        const datum& q = d.items[1];
        if (q.type == kind::list) {
            std::vector<value> items;
            for (const auto& it : q.items) {
                if (it.type == kind::list || it.type == kind::symbol)
                    fail(it, "quoted " + type_name(it) + " is not machine data; expected strings, numbers or booleans");
                items.push_back(value{&it, {}});
            }
            r.v = std::move(items);
        }
        return r;
    }
    if (head.is_symbol("build-machine")) {
        r.v = eval_build_machine(d);
        return r;
    }
    if (is_append_map_head(head)) {
        if (!is_generated_lambda(d.items[1]))
            fail(d.items[1], "append-map with " + d.items[1].show() +
                                 "; only the lambda Guix System writes "
                                 "(lambda (entry) (if (build-machine? entry) (list entry) entry)) is supported");
        value lst = eval(d.items[2], depth + 1);
        auto* items = std::get_if<std::vector<value>>(&lst.v);
        if (!items) fail(d.items[2], "append-map over " + type_name(d.items[2]) + "; expected a list");
        std::vector<value> flat;
        for (auto& e : *items) {
            if (std::holds_alternative<machine>(e.v)) flat.push_back(std::move(e));
            else if (auto* sub = std::get_if<std::vector<value>>(&e.v))
                for (auto& s : *sub) flat.push_back(std::move(s));
            else fail(*e.src, "append-map entry " + type_name(*e.src) + " is neither a build-machine nor a list");
        }
        r.v = std::move(flat);
        return r;
    }
    if (head.type == kind::symbol)
        fail(d, "unsupported form '(" + head.text + " ...)'; " + supported_forms);
    fail(d, "unsupported expression " + d.show() + "; " + supported_forms);
}

}  // namespace

std::vector<machine> parse_guix_machines(std::string_view text, const std::string& file) {
    auto forms = sexpr::read_all(text, file);
    const datum* last = nullptr;
    for (const auto& f : forms) {
        if (last && !is_head(*last, "use-modules"))
            fail(*last, "value " + last->show() + " is followed by another expression; " + supported_forms);
        last = &f;
    }
    if (!last || is_head(*last, "use-modules"))
        throw failure(errc::bad_input, file + ":1:1: no expression: expected a list of build-machine records");
    value v = eval(*last, 0);
    std::vector<machine> out;
    if (auto* items = std::get_if<std::vector<value>>(&v.v)) {
        for (auto& e : *items) {
            auto* m = std::get_if<machine>(&e.v);
            if (!m) fail(*e.src, "list element " + type_name(*e.src) + " is not a build-machine");
            out.push_back(std::move(*m));
        }
        return out;
    }
    fail(*last, "the file's value is " + type_name(*last) + "; expected a list of build-machine records");
}

}  // namespace ferry::machines
