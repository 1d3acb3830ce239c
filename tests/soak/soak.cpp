// hugezero's soak: the pre-zeroing service over a simulated kernel, and (with --pool) the
// stock-kernel pool over this machine's real hugetlb pages, both with consumer threads
// allocating and releasing random amounts for a given time, while the invariants are checked
// continuously. At the end it reports, and exits non-zero on any violation or leak.
//
//   soak [--minutes N | --seconds N] [--consumers N] [--pool] [--seed N]
//
// Invariants, for every simulated hstate, at every check:
// - pages are conserved: free + in use never changes; the consumers' own count of the pages
//   they hold equals the kernel's pages in use;
// - no page is zeroed twice: every page that was ever dirty (initially, or released since) is
//   zeroed exactly once, by a write or by the consumer that allocated it dirty, or is still
//   dirty or being zeroed:  initial dirty + released == zeroed by writes + zeroed on allocation
//   + dirty + being zeroed;
// - the service never credits more than the kernel zeroed through writes, plus the pages
//   writes were asked for but found taken by consumers (pages_short_in_writes): a write that
//   consumers cut short still succeeds, and nothing a reader sees tells (see zeroing_result).
// At the end, once the consumers stopped: the service drains everything, its statistics lie
// within those bounds (at least what the kernel zeroed through writes, and exactly that when no
// write was cut short), nothing is being zeroed, and the process has as many open descriptors
// and threads as before the soak started. With --pool: every lease reads zero on every page
// (also after earlier tenants dirtied them), the pool's count of leases out matches the
// consumers', and every huge page is back in the kernel's free pool at the end.
// The README ("Soak") says how to run it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <hugezero/hugezero.hpp>

#include "support/hugepages.hpp"
#include "support/resources.hpp"

using namespace hugezero::literals;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct soak_options {
    std::chrono::seconds duration{60};
    unsigned consumers = 4;
    bool pool = false;
    std::uint32_t seed = 1;
};

constexpr const char* usage_line = "Usage: soak [--minutes N | --seconds N] [--consumers N] [--pool] [--seed N]\n";

[[noreturn]] void usage(const std::string& message)
{
    std::cerr << "soak: " << message << '\n' << usage_line;
    std::exit(2);
}

soak_options parse(int argc, char** argv)
{
    soak_options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto number = [&]() -> std::uint64_t {
            if (i + 1 >= argc)
                usage(arg + " needs a value");
            const auto value = hugezero::detail::parse_decimal(argv[++i]);
            if (!value)
                usage(arg + " needs a number, got \"" + argv[i] + "\"");
            return *value;
        };
        if (arg == "--minutes")
            o.duration = std::chrono::minutes(number());
        else if (arg == "--seconds")
            o.duration = std::chrono::seconds(number());
        else if (arg == "--consumers")
            o.consumers = static_cast<unsigned>(std::clamp<std::uint64_t>(number(), 1, 64));
        else if (arg == "--seed")
            o.seed = static_cast<std::uint32_t>(number());
        else if (arg == "--pool")
            o.pool = true;
        else if (arg == "--help" || arg == "-h") {
            std::cout << "soak: the pre-zeroing service over a simulated kernel (and with --pool the stock-kernel\n"
                         "pool over this machine's 2 MiB huge pages, as root) under consumer threads, checking\n"
                         "invariants all along and leaks at the end; exits 1 on any violation, 77 if --pool\n"
                         "cannot run here.\n"
                      << usage_line << "Defaults: --seconds 60 --consumers 4 --seed 1\n";
            std::exit(0);
        }
        else
            usage("unknown argument \"" + arg + "\"");
    }
    return o;
}

// Every violation, with when it was seen.
class violations {
public:
    void add(const std::string& what)
    {
        const std::lock_guard lock(mutex_);
        if (list_.size() < 50)
            list_.push_back(what);
        ++count_;
    }
    [[nodiscard]] std::uint64_t count() const
    {
        const std::lock_guard lock(mutex_);
        return count_;
    }
    void print(std::ostream& out) const
    {
        const std::lock_guard lock(mutex_);
        for (const auto& v : list_)
            out << "  VIOLATION: " << v << '\n';
        if (count_ > list_.size())
            out << "  ... and " << count_ - list_.size() << " more\n";
    }

private:
    mutable std::mutex mutex_;
    std::vector<std::string> list_;
    std::uint64_t count_ = 0;
};

// ----- the service over a simulated kernel -----

class service_soak {
public:
    explicit service_soak(const soak_options& o, violations& v)
        : options_(o), violations_(v),
          kernel_(hugezero::sim::machine_builder()
                      .nodes(2)
                      .pages(2_MiB, 1024)
                      .zeroed_pages(2_MiB, 256)
                      .pages(1_GiB, 4)
                      .page_cost(2_MiB, 20us)
                      .page_cost(1_GiB, 2ms)
                      .notify_min_period(5ms)
                      .build()),
          machine_(std::make_shared<hugezero::sim::backend>(kernel_))
    {
        for (const auto& h : kernel_->hstates()) {
            auto& t = tracks_[h];
            t.total = kernel_->counts(h).total();
            t.initial_dirty = kernel_->counts(h).dirty;
        }
    }

    void run(clock_type::time_point deadline)
    {
        hugezero::service_options so;
        so.workers_per_node = 2;
        so.zeroing.batch_bytes = 16 * (2_MiB).bytes();
        so.watch.safety_net_period = 100ms;
        so.error_backoff = 10ms;
        hugezero::prezero_service service(machine_, so);
        service.start();
        {
            std::vector<std::jthread> consumers;
            for (unsigned i = 0; i < options_.consumers; ++i)
                consumers.emplace_back([this, i, deadline] { consume(options_.seed * 1000 + i, deadline); });
            while (clock_type::now() < deadline) {
                check(&service);
                std::this_thread::sleep_for(50ms);
            }
        } // consumers joined: they gave back everything they held
        check(&service);
        if (!service.wait_drained(30s))
            violations_.add("the service did not drain within 30 s once the consumers stopped");
        check(&service);
        for (const auto& s : service.statistics()) {
            const auto truth = kernel_->statistics(s.which);
            if (s.pages_zeroed < truth.pages_zeroed_by_writes
                || s.pages_zeroed > truth.pages_zeroed_by_writes + truth.pages_short_in_writes)
                violations_.add(to_string(s.which) + ": the service credits " + std::to_string(s.pages_zeroed)
                                + " pages, the kernel zeroed " + std::to_string(truth.pages_zeroed_by_writes) + " (and "
                                + std::to_string(truth.pages_short_in_writes) + " were taken from writes by consumers)");
            if (s.errors != 0)
                violations_.add(to_string(s.which) + ": " + std::to_string(s.errors) + " errors, last: " + s.last_error.message());
        }
        service.stop();
        for (const auto& h : kernel_->hstates())
            if (kernel_->counts(h).zeroing != 0 || kernel_->counts(h).dirty != 0)
                violations_.add(to_string(h) + ": idle with pages dirty or being zeroed");
        statistics_ = service.statistics();
    }

    void report(std::ostream& out) const
    {
        out << "service over a simulated kernel (2 nodes, 2MiB and 1GiB pages):\n";
        for (const auto& s : statistics_) {
            const auto truth = kernel_->statistics(s.which);
            const auto& t = tracks_.at(s.which);
            out << "  " << s << "\n    kernel: " << truth.pages_zeroed_by_writes << " zeroed by writes, "
                << truth.pages_zeroed_on_allocation << " zeroed on allocation (a consumer found no zeroed page), "
                << truth.pages_short_in_writes << " taken from writes by consumers, "
                << truth.writes_interrupted << " writes interrupted, " << truth.notifications << " notifications ("
                << truth.notifications_suppressed << " coalesced)\n    consumers: " << t.allocations.load() << " allocations ("
                << t.pages_allocated.load() << " pages), " << t.no_space.load() << " refused for lack of pages, "
                << t.released.load() << " pages released\n";
        }
        out << "  invariant checks: " << checks_ << '\n';
    }

private:
    struct track {
        std::uint64_t total = 0;
        std::uint64_t initial_dirty = 0;
        std::atomic<std::uint64_t> held{0};     // pages consumers hold now
        std::atomic<std::uint64_t> released{0}; // pages consumers gave back
        std::atomic<std::uint64_t> allocations{0};
        std::atomic<std::uint64_t> pages_allocated{0};
        std::atomic<std::uint64_t> no_space{0};
    };

    // A consumer: a VM that starts (allocates pages of one hstate), runs a little, and stops.
    void consume(std::uint32_t seed, clock_type::time_point deadline)
    {
        std::mt19937 random(seed);
        const auto hstates = kernel_->hstates();
        std::vector<std::pair<hugezero::hstate, std::uint64_t>> held;
        while (clock_type::now() < deadline) {
            const auto h = hstates[random() % hstates.size()];
            const std::uint64_t pages = 1 + random() % (h.size == 1_GiB ? 2 : 96);
            auto& t = tracks_.at(h);
            try {
                const std::shared_lock lock(consumers_); // the checker takes it exclusively
                (void)kernel_->allocate(h, pages);
                t.held += pages;
                t.allocations += 1;
                t.pages_allocated += pages;
                held.emplace_back(h, pages);
            } catch (const std::system_error& e) {
                if (e.code().value() != ENOSPC)
                    violations_.add(std::string("allocate: ") + e.what());
                t.no_space += 1;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(random() % 3000));
            while (!held.empty() && (held.size() > 3 || random() % 2 == 0)) {
                const auto [which, n] = held.front();
                held.erase(held.begin());
                release(which, n);
            }
        }
        for (const auto& [which, n] : held)
            release(which, n);
    }

    void release(const hugezero::hstate& h, std::uint64_t pages)
    {
        auto& t = tracks_.at(h);
        const std::shared_lock lock(consumers_);
        kernel_->release(h, pages);
        t.held -= pages;
        t.released += pages;
    }

    void check(const hugezero::prezero_service* service)
    {
        ++checks_;
        const std::unique_lock lock(consumers_); // consumers stand still; the service does not
        for (const auto& h : kernel_->hstates()) {
            const auto& t = tracks_.at(h);
            // A consistent view of counts and statistics: only the service's writes move them
            // now, and a page they finish changes the statistics, so re-read until it stands still.
            // Read before the kernel's count: the service credits a page only after the kernel
            // counted it, so this order makes `credited <= zeroed by writes` exact while the
            // service keeps writing (the other order races with a write ending in between).
            const std::uint64_t credited = service != nullptr ? service->statistics(h).pages_zeroed : 0;
            hugezero::sim::page_counts c;
            hugezero::sim::zeroing_statistics s;
            for (int attempt = 0;; ++attempt) {
                s = kernel_->statistics(h);
                c = kernel_->counts(h);
                if (kernel_->statistics(h).pages_zeroed_by_writes == s.pages_zeroed_by_writes || attempt == 100)
                    break;
            }
            const std::string name = to_string(h);
            if (c.total() != t.total)
                violations_.add(name + ": " + std::to_string(c.total()) + " pages, was " + std::to_string(t.total));
            if (c.in_use != t.held.load())
                violations_.add(name + ": " + std::to_string(c.in_use) + " pages in use, consumers hold "
                                + std::to_string(t.held.load()));
            const std::uint64_t ever_dirty = t.initial_dirty + t.released.load();
            const std::uint64_t accounted = s.pages_zeroed_by_writes + s.pages_zeroed_on_allocation + c.dirty + c.zeroing;
            if (ever_dirty != accounted)
                violations_.add(name + ": " + std::to_string(ever_dirty) + " pages were ever dirty, but "
                                + std::to_string(s.pages_zeroed_by_writes) + " zeroed by writes + "
                                + std::to_string(s.pages_zeroed_on_allocation) + " on allocation + " + std::to_string(c.dirty)
                                + " dirty + " + std::to_string(c.zeroing) + " being zeroed = " + std::to_string(accounted)
                                + " (a page zeroed twice, or lost)");
            if (credited > s.pages_zeroed_by_writes + s.pages_short_in_writes)
                violations_.add(name + ": the service credits " + std::to_string(credited) + " pages, more than the kernel's "
                                + std::to_string(s.pages_zeroed_by_writes) + " zeroed by writes + "
                                + std::to_string(s.pages_short_in_writes) + " taken from writes by consumers");
        }
    }

    const soak_options& options_;
    violations& violations_;
    std::shared_ptr<hugezero::sim::kernel> kernel_;
    hugezero::machine machine_;
    std::map<hugezero::hstate, track> tracks_; // fixed after construction
    std::shared_mutex consumers_;
    std::uint64_t checks_ = 0;
    std::vector<hugezero::hstate_statistics> statistics_;
};

// ----- the pool over real hugetlb pages -----

class pool_soak {
public:
    pool_soak(const soak_options& o, violations& v) : options_(o), violations_(v) {}

    // Why the pool cannot be soaked here, or "".
    std::string prepare()
    {
        if (!std::filesystem::exists("/sys/devices/system/node/node0/hugepages/hugepages-2048kB"))
            return "node0 has no 2 MiB huge pages";
        reservation_.emplace(2_MiB, 64); // restored when the soak ends
        if (!reservation_->ok())
            return reservation_->reason();
        machine_.emplace(hugezero::machine::open());
        free_before_ = machine_->counters(which_).free;
        return {};
    }

    void run(clock_type::time_point deadline)
    {
        {
            hugezero::pool_options po;
            po.reservoirs.push_back({which_, 32 * (2_MiB).bytes(), 8 * (2_MiB).bytes(), 8});
            // No quiet period after a lease: with it, consumers leasing every few ms would keep
            // the refill asleep and the soak would only ever see cold leases. Without it, every
            // lease races the refill workers (yields, trims, cold completion): the hard case.
            po.quiet_after_lease = 0ms;
            po.retry_period = 20ms;
            hugezero::pool p(*machine_, po);
            p.start();
            {
                std::vector<std::jthread> consumers;
                for (unsigned i = 0; i < options_.consumers; ++i)
                    consumers.emplace_back([this, &p, i, deadline] { consume(p, options_.seed * 1000 + 500 + i, deadline); });
                while (clock_type::now() < deadline) {
                    const auto s = p.statistics(which_);
                    if (s.leases_out > out_.load() + options_.consumers || s.ready_pages > s.target_pages + 8)
                        violations_.add("pool: " + to_string_of(s));
                    std::this_thread::sleep_for(50ms);
                }
            }
            const auto s = p.statistics(which_);
            if (s.leases_out != 0)
                violations_.add("pool: " + std::to_string(s.leases_out) + " leases out after every consumer closed its own");
            if (s.errors != 0)
                violations_.add("pool: " + std::to_string(s.errors) + " refill errors, last: " + s.last_error.message());
            statistics_ = s;
            p.stop();
        }
        const auto free_after = machine_->counters(which_).free;
        if (free_after != free_before_)
            violations_.add("pool: " + std::to_string(free_before_) + " free 2MiB pages before, " + std::to_string(free_after)
                            + " after the pool was destroyed");
    }

    void report(std::ostream& out) const
    {
        out << "pool over this machine's hugetlb pages (node0/2MiB, reservoir of 32 pages in files of 8):\n  "
            << to_string_of(statistics_) << "\n  consumers: " << leases_.load() << " leases (" << pages_checked_.load()
            << " pages checked zero), " << refused_.load() << " refused\n";
    }

private:
    static std::string to_string_of(const hugezero::reservoir_statistics& s)
    {
        std::ostringstream out;
        out << s;
        return out.str();
    }

    void consume(hugezero::pool& p, std::uint32_t seed, clock_type::time_point deadline)
    {
        std::mt19937 random(seed);
        while (clock_type::now() < deadline) {
            const std::uint64_t pages = 1 + random() % 10;
            auto got = p.acquire(which_, pages * (2_MiB).bytes());
            if (!got) {
                if (got.error.value() != ENOSPC)
                    violations_.add("pool: acquire: " + got.message);
                refused_ += 1;
                std::this_thread::sleep_for(5ms);
                continue;
            }
            ++out_;
            leases_ += 1;
            try {
                auto memory = hugezero::mapping::map_shared(got.lease.fd(), got.lease.size(), which_.size);
                const std::uint64_t page = which_.size.bytes();
                for (std::uint64_t offset = 0; offset < memory.size(); offset += page) {
                    std::uint64_t first = 1;
                    std::uint64_t last = 1;
                    std::memcpy(&first, memory.data() + offset, sizeof first);
                    std::memcpy(&last, memory.data() + offset + page - sizeof last, sizeof last);
                    if (first != 0 || last != 0)
                        violations_.add("pool: a leased page does not read zero (a previous tenant's data)");
                    pages_checked_ += 1;
                }
                // The tenant dirties its memory: the next tenant must not see it.
                for (std::uint64_t offset = 0; offset < memory.size(); offset += page)
                    std::memset(memory.data() + offset, 0xa5, 4096);
            } catch (const std::exception& e) {
                violations_.add(std::string("pool: mapping a lease: ") + e.what());
            }
            std::this_thread::sleep_for(std::chrono::microseconds(random() % 5000));
            got.lease.close();
            --out_;
        }
    }

    const soak_options& options_;
    violations& violations_;
    const hugezero::hstate which_{hugezero::node_id(0), 2_MiB};
    std::optional<hugezero::test::hugepage_reservation> reservation_;
    std::optional<hugezero::machine> machine_;
    std::uint64_t free_before_ = 0;
    std::atomic<std::uint64_t> out_{0};
    std::atomic<std::uint64_t> leases_{0};
    std::atomic<std::uint64_t> refused_{0};
    std::atomic<std::uint64_t> pages_checked_{0};
    hugezero::reservoir_statistics statistics_;
};

} // namespace

int main(int argc, char** argv)
{
    const soak_options o = parse(argc, argv);
    violations v;
    const auto start = clock_type::now();
    std::cout << "soak: " << o.duration.count() << " s, " << o.consumers << " consumers per subject, seed " << o.seed
              << (o.pool ? ", with the pool" : "") << std::endl;
    std::optional<pool_soak> pool;
    std::string pool_skipped;
    if (o.pool) {
        pool.emplace(o, v);
        pool_skipped = pool->prepare();
        if (!pool_skipped.empty()) { // asked for, so not a silent pass
            std::cerr << "soak: --pool cannot run here: " << pool_skipped << '\n';
            return 77;
        }
    }
    const auto before = hugezero::test::count_resources(); // after the machines are opened
    std::ostringstream report;
    try {
        const auto deadline = start + o.duration;
        service_soak service(o, v);
        std::optional<std::jthread> pool_thread;
        if (pool)
            pool_thread.emplace([&] { pool->run(deadline); });
        service.run(deadline);
        pool_thread.reset(); // joins
        service.report(report);
        if (pool)
            pool->report(report);
    } catch (const std::exception& e) {
        v.add(std::string("unexpected exception: ") + e.what());
    }
    const auto after = hugezero::test::count_resources();
    if (!(after == before)) {
        std::ostringstream what;
        what << "resources leaked: " << before << " before, " << after << " after";
        v.add(what.str());
    }
    std::cout << report.str() << "resources: " << before << " before, " << after << " after\n"
              << "soak: " << std::fixed << std::setprecision(1)
              << std::chrono::duration<double>(clock_type::now() - start).count() << " s, " << v.count() << " violations\n";
    v.print(std::cout);
    return v.count() == 0 ? 0 : 1;
}
