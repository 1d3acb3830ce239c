// bench_startup: what a VM start pays for its memory, cold and from hugezero's pool.
//
//   bench_startup [--gib N] [--churn-gib N] [--repeat N] [--json] [--help]
//
// As root, reserves the huge pages it needs (and puts every counter it changed back on exit,
// also on an error and on SIGINT/SIGTERM/SIGHUP), then measures, for 2 MiB pages (N GiB,
// default 2) and for 1 GiB pages when at least two can be reserved:
//   cold_s            mmap MAP_HUGETLB + single-threaded first touch: a VMM without prefault
//   cold_parallel_s   the same with populate() on every CPU: QEMU's prealloc-threads
//   leased_s          acquire from a filled pool + mmap + populate() (one thread: the pages
//                     exist, only page tables are built): a VMM with the pool
//   first_touch_gbps  the kernel's single-thread first-touch (allocate + zero) rate
//   refill_gbps_1w    the pool's refill rate with one worker (a reservoir of two files)
//   refill_gbps_2w    ... and with two workers
//   refill_gbps_2w_one_file   two workers filling a reservoir of one file (the default chunk)
//   raw_fallocate_gbps_1t     the machine's own limit: fallocate() of hugetlb memfds without
//   raw_fallocate_gbps_2t     hugezero, by one thread, and by two threads (one file each)
//   scrub_gbps        one worker scrubbing a recycled lease (pool::recycle()), against
//                     refill_gbps_1w: zeroing in user space instead of the kernel
//   mapped_only_s     mmap + populate() of a file whose pages are all allocated: the floor
//                     under leased_s (what hugezero cannot take away)
//   cold_leased_s     acquire + mmap + populate() from a pool with nothing ready: the cold path,
//                     against cold_parallel_s
//   churn             20 VMs of --churn-gib each (default 2), from a reservoir of two, one
//                     after the other, each given back before the next (and the reservoir
//                     refilled): warm starts and refill CPU seconds, recycled and closed (it
//                     reserves three VMs' pages; with 1 GiB pages, VMs of a third of what
//                     could be reserved if that is less)
// Each figure is the best of --repeat runs (default 3); figures compared with each other (cold
// and cold_leased, leased and mapped_only, refill and raw) are taken in turn in each round, so
// that they see the same machine. Freshly reserved pages are used
// once before measuring: the first touch of memory the hypervisor has not backed yet costs
// much more, and is not what a VM start on a running host pays.
//
// Exit status: 0 on success, 77 without root or huge pages (with the reason), 130 when
// interrupted, 2 for a bad command line, 1 for any other error.
#include <hugezero/hugezero.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <latch>
#include <limits>
#include <optional>
#include <sstream>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr int exit_skip = 77;
constexpr int exit_interrupted = 130;
constexpr int exit_usage = 2;

void usage(std::ostream& out)
{
    out << "usage: bench_startup [--gib N] [--churn-gib N] [--repeat N] [--json]\n"
           "\n"
           "Measures what a VM start pays for its memory: cold first touch, QEMU-style parallel\n"
           "prefault, and a lease from hugezero's pool; and the pool's refill rate. Needs root: it\n"
           "reserves the huge pages it uses and restores every counter it changed on exit.\n"
           "\n"
           "  --gib N     guest memory for 2 MiB pages, in GiB (default 2); 1 GiB pages use N GiB\n"
           "              too when that many can be reserved, else as many as can (at least 2)\n"
           "  --churn-gib N  the size of each of the 20 VMs of the churn figure, in GiB (default 2;\n"
           "              it reserves three VMs' pages; 1 GiB pages: a third of what can be reserved\n"
           "              if that is less)\n"
           "  --repeat N  runs per figure; the best is kept (default 3)\n"
           "  --json      print {\"results\":[...]} on stdout instead of a table\n"
           "  --help      show this help\n";
}

// --- Interruption: SIGINT, SIGTERM, SIGHUP are blocked in every thread and read from a
// signalfd by one thread, which asks everything to stop; main then unwinds normally and the
// destructors restore the counters.
class interruption {
public:
    interruption()
    {
        sigemptyset(&signals_);
        for (const int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT})
            sigaddset(&signals_, s);
        if (const int rc = ::pthread_sigmask(SIG_BLOCK, &signals_, nullptr); rc != 0)
            throw std::system_error(rc, std::system_category(), "block SIGINT/SIGTERM/SIGHUP");
        signal_fd_ = ::signalfd(-1, &signals_, SFD_CLOEXEC);
        done_fd_ = ::eventfd(0, EFD_CLOEXEC);
        if (signal_fd_ < 0 || done_fd_ < 0)
            throw std::system_error(errno, std::system_category(), "signalfd/eventfd");
        watcher_ = std::thread([this] {
            pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {done_fd_, POLLIN, 0}};
            for (;;) {
                if (::poll(fds, 2, -1) < 0 && errno == EINTR)
                    continue;
                if ((fds[1].revents & POLLIN) != 0)
                    return;
                if ((fds[0].revents & POLLIN) != 0) {
                    signalfd_siginfo info{};
                    if (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info))
                        signal_.store(static_cast<int>(info.ssi_signo));
                    stop_.request_stop();
                }
            }
        });
    }
    interruption(const interruption&) = delete;
    interruption& operator=(const interruption&) = delete;
    ~interruption()
    {
        const std::uint64_t one = 1;
        (void)!::write(done_fd_, &one, sizeof one);
        watcher_.join();
        ::close(signal_fd_);
        ::close(done_fd_);
        // Signals stay blocked: a late one must not kill the process before it exits.
    }
    [[nodiscard]] bool requested() const noexcept { return stop_.stop_requested(); }
    [[nodiscard]] std::stop_token token() const noexcept { return stop_.get_token(); }
    [[nodiscard]] int signal() const noexcept { return signal_.load(); }

private:
    sigset_t signals_{};
    int signal_fd_ = -1;
    int done_fd_ = -1;
    std::stop_source stop_;
    std::atomic<int> signal_{0};
    std::thread watcher_;
};

struct interrupted {}; // thrown to unwind when a signal came

// --- Huge page counters: raise nr_hugepages, put it back.
std::string counter_path(hugezero::page_size size, const char* name)
{
    return "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(size.kib()) + "kB/" + name;
}

std::optional<std::uint64_t> read_counter(const std::string& path)
{
    std::ifstream in(path);
    std::uint64_t value = 0;
    if (!(in >> value))
        return std::nullopt;
    return value;
}

bool write_counter(const std::string& path, std::uint64_t value)
{
    std::ofstream out(path);
    out << value << '\n';
    out.flush();
    return static_cast<bool>(out);
}

class reserved_pages {
public:
    explicit reserved_pages(hugezero::page_size size) : size_(size), path_(counter_path(size, "nr_hugepages")) {}
    reserved_pages(const reserved_pages&) = delete;
    reserved_pages& operator=(const reserved_pages&) = delete;
    ~reserved_pages() { restore(); }

    // Makes at least `pages` pages free (raising nr_hugepages); returns how many are free.
    std::uint64_t reserve(std::uint64_t pages)
    {
        const auto nr = read_counter(path_);
        const auto free = read_counter(counter_path(size_, "free_hugepages"));
        if (!nr || !free)
            return 0;
        if (!original_)
            original_ = nr;
        if (*free < pages)
            (void)write_counter(path_, *nr + (pages - *free)); // the kernel may grant fewer
        return read_counter(counter_path(size_, "free_hugepages")).value_or(0);
    }

    // Puts nr_hugepages back; false (with a message) if the kernel kept some.
    bool restore()
    {
        if (!original_)
            return true;
        const std::uint64_t original = *original_;
        original_.reset();
        (void)write_counter(path_, original);
        const auto now = read_counter(path_);
        if (now != original) {
            std::cerr << "bench_startup: could not restore " << path_ << " to " << original << " (it reads "
                      << (now ? std::to_string(*now) : std::string("nothing")) << ")\n";
            return false;
        }
        return true;
    }

private:
    hugezero::page_size size_;
    std::string path_;
    std::optional<std::uint64_t> original_;
};

// --- The measurements.
struct figures {
    hugezero::page_size page = hugezero::page_2mib;
    std::uint64_t bytes = 0;
    double cold_s = 0;
    double cold_parallel_s = 0;
    double leased_s = 0;
    double refill_gbps_1w = 0;
    double refill_gbps_2w = 0;
    double refill_gbps_2w_one_file = 0;
    double raw_fallocate_gbps_1t = 0;
    double raw_fallocate_gbps_2t = 0;
    double scrub_gbps = 0;
    double mapped_only_s = 0;
    double cold_leased_s = 0;
    struct churn_figures {
        unsigned vms = 0; // 0: not measured (too few pages)
        std::uint64_t vm_bytes = 0;
        unsigned warm_starts_recycled = 0;
        unsigned warm_starts_kernel = 0;
        double refill_cpu_s_recycled = 0;
        double refill_cpu_s_kernel = 0;
    } churn;
    [[nodiscard]] double first_touch_gbps() const { return static_cast<double>(bytes) / cold_s / 1e9; }
    // How much of the machine's own two-thread scaling two refill workers at @p gbps keep.
    [[nodiscard]] double scaling_kept(double gbps) const
    {
        return (gbps / refill_gbps_1w) / (raw_fallocate_gbps_2t / raw_fallocate_gbps_1t);
    }
};

double seconds(clock_type::duration d) { return std::chrono::duration<double>(d).count(); }

class bench {
public:
    bench(const hugezero::machine& m, const interruption& stop, unsigned repeat) : machine_(m), stop_(stop), repeat_(repeat)
    {
    }

    // @p bytes of guest memory; churn VMs of @p churn_vm bytes (0: no churn).
    figures measure(hugezero::page_size page, std::uint64_t bytes, std::uint64_t churn_vm)
    {
        figures f;
        f.page = page;
        f.bytes = bytes;
        progress(page, "warm-up (first use of the reserved pages)");
        warm_up(page, bytes);
        progress(page, "cold: first touch, one thread");
        f.cold_s = best([&] { return cold(page, bytes); });
        progress(page, "cold_parallel (populate() on every CPU) and cold_leased (acquire from an empty pool), in turn");
        std::tie(f.cold_parallel_s, f.cold_leased_s) = best_in_turn([&] { return cold_parallel(page, bytes); },
                                                                    [&] { return cold_leased(page, bytes); });
        progress(page, "leased (acquire + mmap + populate()) and mapped_only (a file already allocated), in turn");
        std::tie(f.leased_s, f.mapped_only_s) = best_in_turn([&] { return leased(page, bytes); },
                                                             [&] { return mapped_only(page, bytes); });
        progress(page, "churn: 20 VMs one after the other, recycled and closed");
        f.churn = churn(page, churn_vm);
        progress(page, "refill with 1 and 2 workers, raw fallocate() with 1 and 2 threads, and a scrub, in turn");
        const auto gbps = [bytes](double seconds) { return static_cast<double>(bytes) / seconds / 1e9; };
        for (unsigned i = 0; i < repeat_; ++i) {
            check_interrupted();
            f.raw_fallocate_gbps_1t = std::max(f.raw_fallocate_gbps_1t, gbps(raw_fallocate(page, bytes, 1)));
            f.refill_gbps_1w = std::max(f.refill_gbps_1w, gbps(refill(page, bytes, 1, bytes / 2)));
            f.raw_fallocate_gbps_2t = std::max(f.raw_fallocate_gbps_2t, gbps(raw_fallocate(page, bytes, 2)));
            f.refill_gbps_2w = std::max(f.refill_gbps_2w, gbps(refill(page, bytes, 2, bytes / 2)));
            f.refill_gbps_2w_one_file = std::max(f.refill_gbps_2w_one_file, gbps(refill(page, bytes, 2, 0)));
            f.scrub_gbps = std::max(f.scrub_gbps, scrub(page, bytes) / 1e9);
        }
        check_interrupted();
        return f;
    }

private:
    void check_interrupted() const
    {
        if (stop_.requested())
            throw interrupted{};
    }

    static void progress(hugezero::page_size page, const char* what) { std::cerr << "bench_startup: " << page << ": " << what << '\n'; }

    double best(const std::function<double()>& run)
    {
        double best = std::numeric_limits<double>::infinity();
        for (unsigned i = 0; i < repeat_; ++i) {
            check_interrupted();
            best = std::min(best, run());
        }
        check_interrupted();
        return best;
    }

    // The best of --repeat runs of each, taken in turn, so that both see the same machine.
    std::pair<double, double> best_in_turn(const std::function<double()>& first, const std::function<double()>& second)
    {
        std::pair<double, double> best{std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
        for (unsigned i = 0; i < repeat_; ++i) {
            check_interrupted();
            best.first = std::min(best.first, first());
            check_interrupted();
            best.second = std::min(best.second, second());
        }
        check_interrupted();
        return best;
    }

    // Builds @p m's page tables (or faults its pages in) with @p threads threads, and returns the
    // seconds since @p start.
    double populated(const hugezero::mapping& m, unsigned threads, clock_type::time_point start) const
    {
        hugezero::prefault_options options;
        options.threads = threads;
        const auto r = hugezero::populate(m, options, stop_.token());
        const double took = seconds(clock_type::now() - start);
        check_interrupted();
        require(r);
        return took;
    }

    static void require(const hugezero::prefault_result& r)
    {
        if (r.status == hugezero::prefault_status::failed)
            throw std::runtime_error(r.message);
    }

    void warm_up(hugezero::page_size page, std::uint64_t bytes)
    {
        hugezero::pool cold_only(machine_, {});
        auto got = cold_only.acquire(hugezero::hstate{hugezero::node_id(0), page}, bytes, stop_.token());
        check_interrupted();
        if (!got)
            throw std::runtime_error(got.message);
    }

    double cold(hugezero::page_size page, std::uint64_t bytes)
    {
        const auto start = clock_type::now();
        const auto m = hugezero::mapping::map_anonymous(bytes, page);
        for (std::uint64_t offset = 0; offset < bytes; offset += page.bytes()) {
            *reinterpret_cast<volatile unsigned char*>(m.data() + offset) = 1; // the kernel allocates and zeroes
            if ((offset / page.bytes()) % 64 == 63)
                check_interrupted();
        }
        return seconds(clock_type::now() - start);
    }

    double cold_parallel(hugezero::page_size page, std::uint64_t bytes)
    {
        const auto start = clock_type::now();
        const auto m = hugezero::mapping::map_anonymous(bytes, page);
        return populated(m, static_cast<unsigned>(std::max<std::size_t>(1, hugezero::current_affinity().count())), start);
    }

    double leased(hugezero::page_size page, std::uint64_t bytes)
    {
        const hugezero::hstate which{hugezero::node_id(0), page};
        hugezero::pool_options options;
        options.reservoirs.push_back({which, bytes, 0, 0});
        hugezero::pool pool(machine_, options);
        pool.start();
        fill(pool);
        const auto start = clock_type::now();
        auto got = pool.acquire(which, bytes);
        if (!got)
            throw std::runtime_error(got.message);
        const auto m = got.lease.map();
        if (got.lease.cold_pages() != 0)
            throw std::runtime_error("a lease from a full reservoir had cold pages");
        // Every page exists on the node: populate() only builds page tables (~0.7 us per 2 MiB
        // page), which the calling thread does faster than threads can be started and pinned.
        return populated(m, 1, start);
    }

    // From start() to a full reservoir of files of @p chunk_bytes (0: one file).
    double refill(hugezero::page_size page, std::uint64_t bytes, unsigned workers, std::uint64_t chunk_bytes)
    {
        const hugezero::hstate which{hugezero::node_id(0), page};
        hugezero::pool_options options;
        options.reservoirs.push_back({which, bytes, chunk_bytes, 0});
        options.workers_per_node = workers;
        hugezero::pool pool(machine_, options);
        const auto start = clock_type::now();
        pool.start();
        fill(pool);
        return seconds(clock_type::now() - start);
    }

    // The floor of a warm start: the pages are all there, only the mapping and page tables cost.
    double mapped_only(hugezero::page_size page, std::uint64_t bytes)
    {
        int error = 0;
        const hugezero::unique_fd fd = hugezero::detail::create_hugetlb_memfd("bench-mapped", page, error);
        if (!fd)
            throw std::system_error(error, std::system_category(), "memfd_create for mapped_only");
        if ((error = hugezero::detail::allocate_pages(fd.get(), page, 0, bytes / page.bytes())) != 0)
            throw std::system_error(error, std::system_category(), "fallocate for mapped_only");
        const auto start = clock_type::now();
        const auto m = hugezero::mapping::map_shared(fd.get(), bytes, page);
        return populated(m, 1, start); // every page is there: page tables only
    }

    // A VM start from a pool with nothing ready: the cold path allocates every page.
    double cold_leased(hugezero::page_size page, std::uint64_t bytes)
    {
        const hugezero::hstate which{hugezero::node_id(0), page};
        hugezero::pool pool(machine_, {});
        const auto start = clock_type::now();
        auto got = pool.acquire(which, bytes, stop_.token());
        if (!got)
            throw std::runtime_error(got.message);
        const auto m = got.lease.map();
        return populated(m, 1, start); // every page is there: page tables only
    }

    // 20 VMs of @p vm bytes, from a reservoir of two such files, one after the other: each
    // gives its lease back (recycled, or closed) before the next starts, once the reservoir is
    // full again. Needs 3 VMs' pages (one out, the reservoir refilling behind it).
    figures::churn_figures churn(hugezero::page_size page, std::uint64_t vm)
    {
        figures::churn_figures c;
        if (vm == 0)
            return c;
        c.vms = 20;
        c.vm_bytes = vm;
        std::tie(c.warm_starts_recycled, c.refill_cpu_s_recycled) = churn_run(page, vm, c.vms, true);
        std::tie(c.warm_starts_kernel, c.refill_cpu_s_kernel) = churn_run(page, vm, c.vms, false);
        return c;
    }

    std::pair<unsigned, double> churn_run(hugezero::page_size page, std::uint64_t vm, unsigned vms, bool recycle)
    {
        const hugezero::hstate which{hugezero::node_id(0), page};
        hugezero::pool_options options;
        options.reservoirs.push_back({which, 2 * vm, vm, 0});
        options.reservoirs.back().recycle = recycle;
        options.quiet_after_lease = std::chrono::nanoseconds::zero();
        hugezero::pool pool(machine_, options);
        pool.start();
        fill(pool);
        const auto before = pool.statistics(which);
        unsigned warm = 0;
        for (unsigned i = 0; i < vms; ++i) {
            check_interrupted();
            auto got = pool.acquire(which, vm);
            if (!got)
                throw std::runtime_error(got.message);
            warm += got.lease.cold_pages() == 0 ? 1 : 0;
            if (recycle)
                (void)pool.recycle(std::move(got.lease));
            else
                got.lease.close();
            fill(pool);
        }
        const auto after = pool.statistics(which);
        const auto cpu = (after.refill_time - before.refill_time) + (after.scrub_time - before.scrub_time);
        return {warm, seconds(cpu)};
    }

    // One worker's scrub rate (bytes per second of time in its scrub steps) for a lease of
    // @p bytes that a tenant wrote to and gave back.
    double scrub(hugezero::page_size page, std::uint64_t bytes)
    {
        const hugezero::hstate which{hugezero::node_id(0), page};
        hugezero::pool_options options;
        options.reservoirs.push_back({which, bytes, 0, 0});
        options.reservoirs.back().recycle = true;
        options.quiet_after_lease = std::chrono::nanoseconds::zero();
        hugezero::pool pool(machine_, options);
        pool.start();
        fill(pool);
        pool.pause(); // the refill must leave the room to the lease coming back
        auto got = pool.acquire(which, bytes);
        if (!got)
            throw std::runtime_error(got.message);
        {
            const auto m = got.lease.map();
            std::memset(m.data(), 0xa5, m.size()); // the tenant's data
        }
        const auto r = pool.recycle(std::move(got.lease));
        if (!r)
            throw std::runtime_error(r.message);
        pool.resume();
        fill(pool);
        return pool.statistics(which).scrub_bytes_per_second();
    }

    // The machine's own limit: @p threads threads, started together, each fallocate()s its
    // share of @p bytes into a hugetlb memfd of its own, in steps of 16 MiB (a page of 1 GiB),
    // as the pool's workers do; no hugezero, no pinning. Seconds from the start to the last.
    static double raw_fallocate(hugezero::page_size page, std::uint64_t bytes, unsigned threads)
    {
        const std::uint64_t share = bytes / threads;
        const std::uint64_t step = std::max<std::uint64_t>(page.bytes(), std::uint64_t{16} << 20);
        std::vector<hugezero::unique_fd> files;
        for (unsigned i = 0; i < threads; ++i) {
            int error = 0;
            files.push_back(hugezero::detail::create_hugetlb_memfd("bench-raw", page, error));
            if (!files.back())
                throw std::system_error(error, std::system_category(), "memfd_create for the raw fallocate() figure");
        }
        std::atomic<int> failure{0};
        std::latch go(threads + 1);
        std::vector<std::thread> workers;
        for (unsigned i = 0; i < threads; ++i)
            workers.emplace_back([&, fd = files[i].get()] {
                go.arrive_and_wait();
                for (std::uint64_t offset = 0; offset < share; offset += step)
                    if (::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(std::min(step, share - offset))) != 0) {
                        failure.store(errno);
                        return;
                    }
            });
        go.arrive_and_wait();
        const auto start = clock_type::now();
        for (auto& w : workers)
            w.join();
        const double took = seconds(clock_type::now() - start);
        if (const int error = failure.load())
            throw std::system_error(error, std::system_category(), "fallocate for the raw fallocate() figure");
        return took;
    }

    void fill(hugezero::pool& pool) const
    {
        const auto deadline = clock_type::now() + std::chrono::minutes(5);
        while (!pool.wait_filled(std::chrono::milliseconds(20))) {
            check_interrupted();
            for (const auto& s : pool.statistics())
                if (s.state == hugezero::reservoir_state::out_of_pages || s.state == hugezero::reservoir_state::failing)
                    throw std::runtime_error("the pool cannot fill its reservoir: " + [&] {
                        std::ostringstream text;
                        text << s;
                        return text.str();
                    }());
            if (clock_type::now() > deadline)
                throw std::runtime_error("the pool did not fill its reservoir in 5 minutes");
        }
    }

    hugezero::machine machine_;
    const interruption& stop_;
    unsigned repeat_;
};

std::string number(double v)
{
    char text[64];
    std::snprintf(text, sizeof text, "%.6g", v);
    return text;
}

void print_json(const std::vector<figures>& results)
{
    std::cout << "{\"results\":[";
    for (std::size_t i = 0; i < results.size(); ++i) {
        const figures& f = results[i];
        std::cout << (i == 0 ? "" : ",") << "{\"page_size_kb\":" << f.page.kib() << ",\"bytes\":" << f.bytes
                  << ",\"cold_s\":" << number(f.cold_s) << ",\"cold_parallel_s\":" << number(f.cold_parallel_s)
                  << ",\"leased_s\":" << number(f.leased_s) << ",\"first_touch_gbps\":" << number(f.first_touch_gbps())
                  << ",\"refill_gbps_1w\":" << number(f.refill_gbps_1w) << ",\"refill_gbps_2w\":" << number(f.refill_gbps_2w)
                  << ",\"refill_gbps_2w_one_file\":" << number(f.refill_gbps_2w_one_file)
                  << ",\"raw_fallocate_gbps_1t\":" << number(f.raw_fallocate_gbps_1t)
                  << ",\"raw_fallocate_gbps_2t\":" << number(f.raw_fallocate_gbps_2t)
                  << ",\"scrub_gbps\":" << number(f.scrub_gbps) << ",\"scrub_stores\":\""
                  << hugezero::detail::to_string(hugezero::detail::stores_for_this_cpu()) << '"'
                  << ",\"mapped_only_s\":" << number(f.mapped_only_s) << ",\"cold_leased_s\":" << number(f.cold_leased_s)
                  << ",\"churn\":{\"vms\":" << f.churn.vms << ",\"vm_bytes\":" << f.churn.vm_bytes
                  << ",\"warm_starts_recycled\":" << f.churn.warm_starts_recycled
                  << ",\"warm_starts_kernel\":" << f.churn.warm_starts_kernel
                  << ",\"refill_cpu_s_recycled\":" << number(f.churn.refill_cpu_s_recycled)
                  << ",\"refill_cpu_s_kernel\":" << number(f.churn.refill_cpu_s_kernel) << "}}";
    }
    std::cout << "]}\n";
}

void print_table(const std::vector<figures>& results)
{
    for (const figures& f : results) {
        const double speedup = f.cold_parallel_s / f.leased_s;
        const double goal = f.page == hugezero::page_1gib ? 1000 : 100;
        std::cout << f.page << " pages, " << (f.bytes >> 20) << " MiB:\n"
                  << "  cold_s            " << number(f.cold_s) << '\n'
                  << "  cold_parallel_s   " << number(f.cold_parallel_s) << '\n'
                  << "  leased_s          " << number(f.leased_s) << "   (" << number(speedup)
                  << "x faster than cold_parallel; goal " << goal << "x: " << (speedup >= goal ? "met" : "MISSED") << ")\n"
                  << "  first_touch_gbps  " << number(f.first_touch_gbps()) << '\n'
                  << "  refill_gbps_1w    " << number(f.refill_gbps_1w) << "   (" << number(100 * f.refill_gbps_1w / f.first_touch_gbps())
                  << "% of first touch; goal 90%: " << (f.refill_gbps_1w >= 0.9 * f.first_touch_gbps() ? "met" : "MISSED") << ")\n"
                  << "  refill_gbps_2w    " << number(f.refill_gbps_2w) << "   (" << number(f.refill_gbps_2w / f.refill_gbps_1w)
                  << "x one worker)\n"
                  << "  refill_gbps_2w_one_file  " << number(f.refill_gbps_2w_one_file) << "   ("
                  << number(f.refill_gbps_2w_one_file / f.refill_gbps_1w) << "x one worker)\n"
                  << "  raw_fallocate_gbps_1t    " << number(f.raw_fallocate_gbps_1t) << '\n'
                  << "  raw_fallocate_gbps_2t    " << number(f.raw_fallocate_gbps_2t) << "   ("
                  << number(f.raw_fallocate_gbps_2t / f.raw_fallocate_gbps_1t) << "x one thread: the machine's own limit)\n"
                  << "  two workers keep " << number(100 * f.scaling_kept(f.refill_gbps_2w)) << "% (two files) and "
                  << number(100 * f.scaling_kept(f.refill_gbps_2w_one_file))
                  << "% (one file) of the machine's two-thread scaling (goal 90%: "
                  << (std::min(f.scaling_kept(f.refill_gbps_2w), f.scaling_kept(f.refill_gbps_2w_one_file)) >= 0.9 ? "met" : "MISSED")
                  << ")\n";
        const double scrub_goal = f.page == hugezero::page_1gib ? 2 : 3;
        std::cout << "  scrub_gbps        " << number(f.scrub_gbps) << "   (" << number(f.scrub_gbps / f.refill_gbps_1w)
                  << "x the kernel's refill, one worker each, "
                  << hugezero::detail::to_string(hugezero::detail::stores_for_this_cpu()) << " stores; goal " << scrub_goal
                  << "x: " << (f.scrub_gbps >= scrub_goal * f.refill_gbps_1w ? "met" : "MISSED") << ")\n";
        std::cout << "  mapped_only_s     " << number(f.mapped_only_s) << "   (leased_s is " << number(f.leased_s / f.mapped_only_s)
                  << "x it; goal 1.5x: " << (f.leased_s <= 1.5 * f.mapped_only_s ? "met" : "MISSED") << ")\n"
                  << "  cold_leased_s     " << number(f.cold_leased_s) << "   (" << number(f.cold_parallel_s / f.cold_leased_s)
                  << "x as fast as cold_parallel; goal 0.95x: " << (f.cold_parallel_s >= 0.95 * f.cold_leased_s ? "met" : "MISSED")
                  << ")\n";
        if (f.churn.vms == 0)
            std::cout << "  churn             not measured (fewer than 3 pages could be reserved)\n";
        else
            std::cout << "  churn             " << f.churn.vms << " VMs of " << hugezero::detail::bytes_text(f.churn.vm_bytes)
                      << ": recycled " << f.churn.warm_starts_recycled
                      << " warm starts, " << number(f.churn.refill_cpu_s_recycled) << " s refill CPU; closed "
                      << f.churn.warm_starts_kernel << " warm starts, " << number(f.churn.refill_cpu_s_kernel) << " s ("
                      << number(f.churn.refill_cpu_s_kernel / f.churn.refill_cpu_s_recycled) << "x)\n";
    }
}

struct arguments {
    std::uint64_t gib = 2;
    std::uint64_t churn_gib = 2;
    unsigned repeat = 3;
    bool json = false;
};

std::optional<arguments> parse(int argc, char** argv)
{
    arguments a;
    const auto number_after = [&](int& i, std::string_view option) -> std::uint64_t {
        if (i + 1 >= argc)
            throw std::invalid_argument(std::string(option) + " needs a value");
        const char* text = argv[++i];
        char* end = nullptr;
        errno = 0;
        const unsigned long long v = std::strtoull(text, &end, 10);
        if (end == text || *end != '\0' || errno != 0 || v == 0 || text[0] == '-')
            throw std::invalid_argument(std::string(option) + ": expected a positive number, got " + text);
        return v;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string_view option = argv[i];
        if (option == "--help" || option == "-h") {
            usage(std::cout);
            return std::nullopt;
        }
        if (option == "--gib")
            a.gib = number_after(i, option);
        else if (option == "--churn-gib")
            a.churn_gib = number_after(i, option);
        else if (option == "--repeat")
            a.repeat = static_cast<unsigned>(number_after(i, option));
        else if (option == "--json")
            a.json = true;
        else
            throw std::invalid_argument("unknown option " + std::string(option));
    }
    return a;
}

int run(const arguments& a, const interruption& stop)
{
    if (::geteuid() != 0) {
        std::cerr << "bench_startup: skipped: needs root (it reserves huge pages through /sys/kernel/mm/hugepages)\n";
        return exit_skip;
    }
    const hugezero::machine machine = hugezero::machine::open();
    const auto& sizes = machine.topology().page_sizes();
    const auto has = [&](hugezero::page_size s) { return std::find(sizes.begin(), sizes.end(), s) != sizes.end(); };
    if (!has(hugezero::page_2mib)) {
        std::cerr << "bench_startup: skipped: this kernel has no 2 MiB huge pages\n";
        return exit_skip;
    }
    if (machine.topology().nodes().size() != 1)
        std::cerr << "bench_startup: note: measuring node 0 of " << machine.topology().nodes().size() << " nodes\n";
    std::vector<figures> results;
    bench b(machine, stop, a.repeat);
    {
        reserved_pages reservation(hugezero::page_2mib);
        const std::uint64_t pages = a.gib * 512;
        const std::uint64_t needed = std::max(a.gib, 3 * a.churn_gib) * 512; // churn: three VMs
        const std::uint64_t granted = reservation.reserve(needed);
        if (granted < needed) {
            std::cerr << "bench_startup: skipped: could reserve only " << granted << " of the " << needed
                      << " 2 MiB huge pages needed\n";
            return exit_skip;
        }
        results.push_back(b.measure(hugezero::page_2mib, pages * hugezero::page_2mib.bytes(), a.churn_gib << 30));
        if (!reservation.restore())
            return 1;
    }
    if (has(hugezero::page_1gib)) {
        reserved_pages reservation(hugezero::page_1gib);
        const std::uint64_t granted = reservation.reserve(std::max(a.gib, 3 * a.churn_gib));
        const std::uint64_t pages = std::min(granted, a.gib);
        const std::uint64_t churn_vm = std::min(a.churn_gib, granted / 3) << 30;
        if (stop.requested())
            throw interrupted{};
        if (pages >= 2)
            results.push_back(b.measure(hugezero::page_1gib, pages * hugezero::page_1gib.bytes(), churn_vm));
        else
            std::cerr << "bench_startup: 1 GiB pages skipped: fewer than two could be reserved (" << pages << ")\n";
        if (!reservation.restore())
            return 1;
    }
    if (a.json)
        print_json(results);
    else
        print_table(results);
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    std::optional<arguments> a;
    try {
        a = parse(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::cerr << "bench_startup: " << e.what() << "\n\n";
        usage(std::cerr);
        return exit_usage;
    }
    if (!a)
        return 0;
    try {
        const interruption stop; // before any other thread exists: they all inherit the mask
        try {
            return run(*a, stop);
        } catch (const interrupted&) {
            std::cerr << "bench_startup: interrupted by signal " << stop.signal() << "; counters restored\n";
            return exit_interrupted;
        }
    } catch (const std::exception& e) {
        std::cerr << "bench_startup: " << e.what() << '\n';
        return 1;
    }
}
