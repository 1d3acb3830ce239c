/// @file
/// @brief hugezero::id_range, one range of a kernel range list (`0-7,16-23`).
#ifndef HUGEZERO_ID_RANGE_HPP
#define HUGEZERO_ID_RANGE_HPP

namespace hugezero {

/// A range of CPU or node numbers, both ends included: one item of a range list such as a
/// node's `cpulist` (`0-7,16-23` is {0, 7} and {16, 23}).
struct id_range {
    unsigned first; ///< First id in the range.
    unsigned last;  ///< Last id in the range (inclusive).
    /// Two ranges are equal when their ends are.
    friend bool operator==(const id_range&, const id_range&) = default;
};

} // namespace hugezero

#endif
