// bench_zeroing: what hugezero's engine costs on top of the kernel's own work, measured on the
// simulated kernel against baselines taken in the same run (the machines are shared and noisy,
// so the figures that matter are ratios):
//
//   overhead_us      library time per request beyond the kernel's own work, against a loop of
//                    raw writes of the same requests to the same simulated kernel (goal < 5 us)
//   latency_p50_us,  from a VM releasing a page to the service's write that zeroes it
//   latency_p99_us   (goal p99 < 200 us)
//   memset_gbps      a plain memset loop over the same bytes, one thread (the baseline)
//   memset_gbps_2t   the same in two threads: how far this machine scales at all
//   zeroing_gbps_1w, the service zeroing with one and two workers, each page memset for real
//   zeroing_gbps_2w  (goals: 1 worker >= 90% of memset_gbps; 2 workers >= 1.6x one)
//
// Usage: bench_zeroing [--json] [--requests N] [--latency-samples N] [--gib N] [--help]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <hugezero/hugezero.hpp>

using namespace hugezero::literals;
using clock_type = std::chrono::steady_clock;

namespace {

const hugezero::hstate node0_2m{hugezero::node_id(0), 2_MiB};

double seconds_since(clock_type::time_point start) { return std::chrono::duration<double>(clock_type::now() - start).count(); }

hugezero::machine simulated(const std::shared_ptr<hugezero::sim::kernel>& kernel)
{
    return hugezero::machine(std::make_shared<hugezero::sim::backend>(kernel));
}

// Library overhead: N requests of one page through zero_pages() against N raw writes of "1" to
// the same attribute. Pages cost nothing to zero, so what is left is bookkeeping on both sides.
double overhead_us(std::uint64_t requests)
{
    const auto kernel = hugezero::sim::machine_builder().pages(2_MiB, 2 * requests).build();
    const auto m = simulated(kernel);
    const auto writer = m.backend().open_writer(m.zeroable_path(node0_2m));
    const auto raw_start = clock_type::now();
    for (std::uint64_t i = 0; i < requests; ++i)
        if (!writer->write("1").succeeded())
            throw std::runtime_error("raw write failed");
    const double raw = seconds_since(raw_start);
    hugezero::zeroing_options one_page;
    one_page.batch_bytes = (2_MiB).bytes();
    const auto result = hugezero::zero_pages(m, node0_2m, requests, {}, one_page);
    if (result.writes != requests)
        throw std::runtime_error("zero_pages made " + std::to_string(result.writes) + " writes");
    const double library = std::chrono::duration<double>(result.elapsed).count();
    return (library - raw) / static_cast<double>(requests) * 1e6;
}

// A backend that notes when each write starts, so the bench can tell how long after a release
// the service's write began.
class write_clock final : public hugezero::backend {
public:
    explicit write_clock(std::shared_ptr<hugezero::backend> inner) : inner_(std::move(inner)) {}
    std::string read(std::string_view path) override { return inner_->read(path); }
    std::optional<std::vector<std::string>> list(std::string_view path) override { return inner_->list(path); }
    std::unique_ptr<hugezero::attribute_watch> open_watch(std::string_view path) override { return inner_->open_watch(path); }
    [[nodiscard]] std::string display_path(std::string_view path) const override { return inner_->display_path(path); }
    std::unique_ptr<hugezero::attribute_writer> open_writer(std::string_view path) override
    {
        return std::make_unique<writer>(*this, inner_->open_writer(path));
    }
    clock_type::time_point wait_for_write(clock_type::time_point after)
    {
        std::unique_lock lock(mutex_);
        if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return last_ > after; }))
            throw std::runtime_error("the service never wrote");
        return last_;
    }

private:
    class writer final : public hugezero::attribute_writer {
    public:
        writer(write_clock& owner, std::unique_ptr<hugezero::attribute_writer> inner) : owner_(owner), inner_(std::move(inner)) {}
        hugezero::write_outcome write(std::string_view request) override
        {
            {
                const std::lock_guard lock(owner_.mutex_);
                owner_.last_ = clock_type::now();
            }
            owner_.cv_.notify_all();
            return inner_->write(request);
        }

    private:
        write_clock& owner_;
        std::unique_ptr<hugezero::attribute_writer> inner_;
    };
    std::shared_ptr<hugezero::backend> inner_;
    std::mutex mutex_;
    std::condition_variable cv_;
    clock_type::time_point last_{};
};

std::pair<double, double> latency_us(int samples)
{
    const auto kernel = hugezero::sim::machine_builder().in_use_pages(2_MiB, 1).build();
    const auto timed = std::make_shared<write_clock>(std::make_shared<hugezero::sim::backend>(kernel));
    const hugezero::machine m(timed);
    hugezero::service_options options;
    options.watch.safety_net_period = std::chrono::hours(1); // only the notification may wake it
    hugezero::prezero_service service(m, options);
    service.start();
    std::vector<double> latencies;
    for (int i = 0; i < samples; ++i) {
        if (kernel->counts(node0_2m).in_use == 0)
            (void)kernel->allocate(node0_2m, 1);
        const auto released = clock_type::now();
        kernel->release(node0_2m, 1);
        const auto written = timed->wait_for_write(released);
        latencies.push_back(std::chrono::duration<double, std::micro>(written - released).count());
        if (!service.wait_drained(std::chrono::seconds(10)))
            throw std::runtime_error("the service did not drain");
    }
    std::sort(latencies.begin(), latencies.end());
    const auto at = [&](double q) { return latencies[static_cast<std::size_t>(q * static_cast<double>(latencies.size() - 1))]; };
    return {at(0.50), at(0.99)};
}

// A plain memset loop over the same bytes as the service, in `threads` threads, each with its
// own buffer of the same size as a worker's: the baseline, and what the hardware can scale to.
double memset_gbps(std::uint64_t bytes, std::uint64_t buffer_size, unsigned threads)
{
    const auto start = clock_type::now();
    {
        std::vector<std::jthread> running;
        for (unsigned t = 0; t < threads; ++t)
            running.emplace_back([=] {
                std::vector<unsigned char> buffer(buffer_size, 1);
                for (std::uint64_t done = 0; done < bytes / threads; done += buffer_size)
                    std::memset(buffer.data(), 0, buffer_size);
                volatile unsigned char sink = buffer[buffer_size / 2]; // keep the memset observable
                (void)sink;
            });
    }
    return static_cast<double>(bytes) / seconds_since(start) / 1e9;
}

// The service zeroing `pages` pages of 2 MiB with real memset work per page.
double zeroing_gbps(unsigned workers, std::uint64_t pages, std::uint64_t buffer_size)
{
    const auto kernel = hugezero::sim::machine_builder()
                            .pages(2_MiB, pages)
                            .work(hugezero::sim::work_mode::memset, buffer_size)
                            .build();
    const auto m = simulated(kernel);
    hugezero::service_options options;
    options.workers_per_node = workers;
    options.thread.cpus = hugezero::current_affinity(); // let each worker use any CPU
    hugezero::prezero_service service(m, options);
    const auto start = clock_type::now();
    service.start();
    if (!service.wait_drained(std::chrono::minutes(5)))
        throw std::runtime_error("the service did not drain");
    const double seconds = seconds_since(start);
    return static_cast<double>(service.statistics(node0_2m).bytes_zeroed()) / seconds / 1e9;
}

} // namespace

int main(int argc, char** argv)
{
    bool json = false;
    std::uint64_t requests = 200000;
    int samples = 2000;
    std::uint64_t gib = 8;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto next = [&]() -> std::uint64_t {
            if (i + 1 >= argc)
                throw std::invalid_argument(arg + " needs a value");
            return std::stoull(argv[++i]);
        };
        try {
            if (arg == "--json")
                json = true;
            else if (arg == "--requests")
                requests = std::max<std::uint64_t>(1, next());
            else if (arg == "--latency-samples")
                samples = static_cast<int>(std::clamp<std::uint64_t>(next(), 10, 1000000));
            else if (arg == "--gib")
                gib = std::clamp<std::uint64_t>(next(), 1, 1024);
            else if (arg == "--help") {
                std::cout << "Usage: bench_zeroing [--json] [--requests N] [--latency-samples N] [--gib N]\n"
                             "Measures hugezero's overhead per request, watcher latency and zeroing throughput\n"
                             "on the simulated kernel, against baselines taken in the same run.\n";
                return 0;
            } else
                throw std::invalid_argument("unknown argument " + arg);
        } catch (const std::exception& e) {
            std::cerr << "bench_zeroing: " << e.what() << " (see --help)\n";
            return 2;
        }
    }
    const std::uint64_t buffer = (2_MiB).bytes(); // one real page-sized buffer per worker
    const std::uint64_t pages = gib * 512;
    if (!json)
        std::cerr << "bench_zeroing: " << requests << " requests, " << samples << " latency samples, " << gib
                  << " GiB per throughput run\n";
    const double overhead = overhead_us(requests);
    const auto [p50, p99] = latency_us(samples);
    (void)memset_gbps(pages * (2_MiB).bytes() / 8, buffer, 1); // warm up
    const double plain = memset_gbps(pages * (2_MiB).bytes(), buffer, 1);
    const double plain_two = memset_gbps(pages * (2_MiB).bytes(), buffer, 2);
    const double one = zeroing_gbps(1, pages, buffer);
    const double two = zeroing_gbps(2, pages, buffer);
    if (json) {
        std::cout << std::fixed << std::setprecision(3) << R"({"overhead_us":)" << overhead << R"(,"latency_p50_us":)" << p50
                  << R"(,"latency_p99_us":)" << p99 << R"(,"memset_gbps":)" << plain << R"(,"memset_gbps_2t":)" << plain_two << R"(,"zeroing_gbps_1w":)" << one
                  << R"(,"zeroing_gbps_2w":)" << two << R"(,"ratio_1w_to_memset":)" << one / plain
                  << R"(,"ratio_2w_to_1w":)" << two / one << "}\n";
        return 0;
    }
    std::cout << std::fixed << std::setprecision(2);
    std::cout << "library overhead per request   " << overhead << " us   (goal < 5 us)\n";
    std::cout << "release-to-write latency       p50 " << p50 << " us, p99 " << p99 << " us   (goal p99 < 200 us)\n";
    std::cout << "plain memset, 1 thread         " << plain << " GB/s\n";
    std::cout << "plain memset, 2 threads        " << plain_two << " GB/s = " << plain_two / plain
              << "x one thread (what this machine allows)\n";
    std::cout << "service, 1 worker              " << one << " GB/s = " << 100 * one / plain
              << "% of memset   (goal >= 90%)\n";
    std::cout << "service, 2 workers             " << two << " GB/s = " << two / one << "x one worker   (goal >= 1.6x)\n";
    return 0;
}
