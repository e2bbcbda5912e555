// NAR bytes of small fixtures, built with the protocol layer's emitter.
#pragma once

#include <string>
#include <string_view>

#include "ferry/protocol/nar.hpp"

namespace test_support {

// The NAR of one regular, non-executable file.
inline std::string one_file_nar(std::string_view contents) {
    namespace nar = ferry::protocol::nar;
    std::string out;
    nar::append_magic(out);
    nar::append_regular_header(out, false, contents.size());
    out += contents;
    nar::append_regular_end(out, contents.size());
    return out;
}

}  // namespace test_support
