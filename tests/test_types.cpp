#include <doctest/doctest.h>

#include <hugezero/hugezero.hpp>

using namespace hugezero::literals;

TEST_SUITE("types")
{
    TEST_CASE("page sizes print in the largest exact binary unit")
    {
        CHECK(hugezero::to_string(2_MiB) == "2MiB");
        CHECK(hugezero::to_string(1_GiB) == "1GiB");
    }
}
