// hugezerod's lease desk: the leases each connection holds, and the requests that make and
// return them. A warm acquire is served on the loop (a hand-over of microseconds); one that
// needs cold pages (allocated, and zeroed, on the spot) and every lease given back (the
// recycler looks through /proc) go to the job threads, and their answers come back to the loop.
// A lease follows its connection: when the connection closes its leases go back to the pool,
// which recycles each once nothing else refers to its file.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_LEASE_DESK_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_LEASE_DESK_HPP

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <utility>

#include <hugezero/pool.hpp>

#include "hugezerod/config.hpp"
#include "hugezerod/jobs.hpp"
#include "hugezerod/logging.hpp"
#include "hugezerod/metrics.hpp"
#include "protocol/replies.hpp"
#include "protocol/requests.hpp"

namespace hugezerod {

class lease_desk {
public:
    /// Sends a reply (and an fd, unless -1) to a connection; false if it is gone or could not take it.
    using reply_function = std::function<bool(std::uint64_t connection, const std::string& text, int fd)>;

    lease_desk(hugezero::pool& pool, job_runner& jobs, const config& c, daemon_counters& counters, const server_hooks& hooks)
        : pool_(pool), jobs_(jobs), config_(c), counters_(counters), hooks_(hooks)
    {
    }
    lease_desk(const lease_desk&) = delete;
    lease_desk& operator=(const lease_desk&) = delete;

    /// Where replies go (the sessions).
    void on_reply(reply_function reply) { reply_ = std::move(reply); }

    /// The leases @p connection holds.
    [[nodiscard]] std::size_t leases_of(std::uint64_t connection) const
    {
        const auto it = desks_.find(connection);
        return it == desks_.end() ? 0 : it->second.leases.size();
    }

    /// Serves @p r for @p connection: a lease, or an error reply.
    void acquire(std::uint64_t connection, protocol::acquire_request r)
    {
        holding& h = desks_[connection];
        if (h.leases.size() + h.pending.size() >= config_.max_leases_per_client)
            return refuse(connection, EBUSY, "this connection holds " + std::to_string(config_.max_leases_per_client)
                                                 + " leases already (max_leases_per_client)");
        auto warm = try_acquire(r, hugezero::acquire_options{0, {}, r.name});
        const bool cold_allowed = !r.max_cold_pages || *r.max_cold_pages > 0;
        if (warm || warm.error.value() != EAGAIN || !cold_allowed)
            return deliver(connection, r, std::move(warm));
        auto stop = std::make_shared<std::stop_source>();
        const std::uint64_t job = next_job_++;
        h.pending.emplace(job, stop);
        jobs_.post([this, connection, job, r, stop](std::stop_token runner) -> std::function<void()> {
            const std::stop_callback relay(runner, [&] { stop->request_stop(); });
            auto got = std::make_shared<hugezero::acquire_result>(
                try_acquire(r, hugezero::acquire_options{r.max_cold_pages, stop->get_token(), r.name}));
            return [this, connection, job, r, got] {
                if (const auto it = desks_.find(connection); it != desks_.end())
                    it->second.pending.erase(job);
                deliver(connection, r, std::move(*got));
            };
        });
    }

    /// Takes lease @p id back from @p connection and answers with what the pool did with it.
    void release(std::uint64_t connection, std::uint64_t id)
    {
        const auto d = desks_.find(connection);
        if (d == desks_.end() || d->second.leases.count(id) == 0)
            return (void)reply_(connection, protocol::format_error(ENOENT, "this connection holds no lease " + std::to_string(id)), -1);
        auto l = std::move(d->second.leases.extract(id).mapped());
        --counters_.leases_held;
        ++counters_.leases_taken_back;
        take_back(std::move(l), "", [this, connection, id](const std::string& status) {
            (void)reply_(connection, protocol::format(protocol::released_reply{id, status}), -1);
        });
    }

    /// @p connection closed: its leases go back to the pool, its cold acquires are cancelled
    /// (their leases, if they come, go back too).
    void connection_closed(std::uint64_t connection)
    {
        const auto d = desks_.find(connection);
        if (d == desks_.end())
            return;
        for (auto& [job, stop] : d->second.pending)
            stop->request_stop();
        for (auto& [id, l] : d->second.leases) {
            --counters_.leases_held;
            ++counters_.leases_taken_back;
            take_back(std::move(l), "its connection closed");
        }
        desks_.erase(d);
    }

private:
    struct holding {
        std::map<std::uint64_t, std::shared_ptr<hugezero::lease>> leases;       // by lease id
        std::map<std::uint64_t, std::shared_ptr<std::stop_source>> pending;     // cold acquires in flight, by job
    };

    void refuse(std::uint64_t connection, int code, const std::string& why)
    {
        ++counters_.acquires_refused;
        (void)reply_(connection, protocol::format_error(code, why), -1);
    }

    hugezero::acquire_result try_acquire(const protocol::acquire_request& r, const hugezero::acquire_options& o)
    {
        try {
            return pool_.acquire(hugezero::hstate{r.node, r.page}, r.bytes, o);
        } catch (const std::exception& e) {
            hugezero::acquire_result failed;
            failed.error = std::error_code(EINVAL, std::generic_category());
            failed.message = e.what();
            return failed;
        }
    }

    // Hands @p got to @p connection, or takes it back if the connection is gone.
    void deliver(std::uint64_t connection, const protocol::acquire_request& r, hugezero::acquire_result got)
    {
        if (!got) {
            const bool need_cold = got.error.value() == EAGAIN && r.max_cold_pages && *r.max_cold_pages == 0;
            return refuse(connection, got.error.value(), got.message + (need_cold ? " (the request allows no cold page)" : ""));
        }
        auto l = std::make_shared<hugezero::lease>(std::move(got.lease));
        const auto d = desks_.find(connection);
        const std::uint64_t id = next_lease_++;
        const protocol::lease_reply text{id, l->node().value(), l->page().kib(), l->pages(), l->cold_pages(), l->path().string()};
        if (d == desks_.end() || !reply_(connection, protocol::format(text), l->fd())) {
            ++counters_.leases_undelivered;
            return take_back(std::move(l), "its client left, or could not take it");
        }
        d->second.leases.emplace(id, std::move(l));
        ++counters_.leases_granted;
        ++counters_.leases_held;
    }

    // Gives @p l back to the pool on a job thread; then @p done(status) on the loop.
    void take_back(std::shared_ptr<hugezero::lease> l, const std::string& why, std::function<void(const std::string&)> done = nullptr)
    {
        jobs_.post([this, l = std::move(l), why, done = std::move(done)](std::stop_token) -> std::function<void()> {
            hugezero::recycle_result r;
            try {
                r = pool_.recycle(std::move(*l));
            } catch (const std::exception& e) { // the lease closes: its pages go back to the kernel
                r.status = hugezero::recycle_status::unusable;
                r.message = e.what();
            }
            return [this, word = protocol::word(r.status), message = r.message, status = r.status, why, done] {
                ++counters_.recycles[word];
                if (status != hugezero::recycle_status::recycled) // a recycle is counted, not logged
                    hooks_.log(level::info, "a lease given back" + (why.empty() ? "" : " (" + why + ")") + ": " + word + ": " + message);
                if (done)
                    done(word);
            };
        });
    }

    hugezero::pool& pool_;
    job_runner& jobs_;
    const config& config_;
    daemon_counters& counters_;
    const server_hooks& hooks_;
    reply_function reply_ = [](std::uint64_t, const std::string&, int) { return false; };
    std::map<std::uint64_t, holding> desks_; // by connection id
    std::uint64_t next_lease_ = 1;
    std::uint64_t next_job_ = 1;
};

} // namespace hugezerod

#endif
