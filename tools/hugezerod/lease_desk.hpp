// hugezerod's lease desk: the leases each connection holds, and the requests that make and
// return them. A warm acquire is served on the loop (a hand-over of microseconds); one that
// needs cold pages (allocated, and zeroed, on the spot) and every lease given back (the
// recycler looks through /proc) go to the job threads, and their answers come back to the loop.
// A lease follows its connection: when the connection closes its leases go back to the pool.
// A lease given back is emptied (its pages back to the kernel at once: pool::retire()), unless
// its reservoir says `recycle = trusted-peers` and its holder's uid is among trusted_users: the
// pool then recycles it once nothing else refers to its file (pool::recycle()).
// An admin (admin_users: a hook such as libvirt's, for a VMM that cannot hold a connection) may
// also detach a lease from its connection (held under a tag until `release tag=`), give its file
// to another owner and mode, and place a second link to it (placement.hpp); such a lease is
// never recycled, and its owner, mode and link are undone when it comes back.
#ifndef HUGEZERO_TOOLS_HUGEZEROD_LEASE_DESK_HPP
#define HUGEZERO_TOOLS_HUGEZEROD_LEASE_DESK_HPP

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <utility>

#include <sys/types.h>
#include <unistd.h>

#include <hugezero/pool.hpp>

#include "hugezerod/config.hpp"
#include "hugezerod/jobs.hpp"
#include "hugezerod/logging.hpp"
#include "hugezerod/metrics.hpp"
#include "hugezerod/placement.hpp"
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

    /// The daemon stops: each detached lease's file keeps its name in its named reservoir (a memfd
    /// just closes), so that the next daemon watches it as a lease given back and empties it once
    /// nothing refers to it (QEMU gone, and any other link of it too). Returns how many.
    std::size_t leave_detached()
    {
        std::size_t n = 0;
        for (auto& [tag, leases] : detached_)
            for (auto& [id, h] : leases) {
                if (*h.lease)
                    (void)::close(h.lease->release());
                ++n;
            }
        detached_.clear();
        counters_.leases_detached = 0;
        return n;
    }

    /// The detached leases held now (under every tag).
    [[nodiscard]] std::size_t detached() const
    {
        std::size_t n = 0;
        for (const auto& [tag, leases] : detached_)
            n += leases.size();
        return n;
    }

    /// Whether @p connection holds a lease or waits for one.
    [[nodiscard]] bool busy(std::uint64_t connection) const
    {
        const auto it = desks_.find(connection);
        return it != desks_.end() && (!it->second.leases.empty() || !it->second.pending.empty());
    }

    /// Serves @p r for @p connection, whose peer is @p uid: a lease, or an error reply. A
    /// connection, and all connections of one uid together, hold at most their limits of
    /// leases (cold acquires in progress count); a uid has at most max_cold_acquires_per_user
    /// cold acquires running on the job threads, its others wait for them in turn.
    void acquire(std::uint64_t connection, uid_t uid, protocol::acquire_request r)
    {
        holding& h = desks_[connection];
        h.uid = uid;
        if (const std::string why = admin_refusal(uid, r); !why.empty())
            return refuse(connection, EPERM, why);
        if (h.leases.size() + h.pending.size() >= config_.max_leases_per_client)
            return refuse(connection, EBUSY, "this connection holds " + std::to_string(config_.max_leases_per_client)
                                                 + " leases already (max_leases_per_client)");
        if (const std::size_t held = leases_of_user(uid); held >= config_.max_leases_per_user)
            return refuse(connection, EBUSY, "uid " + std::to_string(uid) + " holds " + std::to_string(held)
                                                 + " leases already over all its connections (max_leases_per_user)");
        if (const std::uint64_t held = config_.max_bytes_per_user != 0 ? bytes_of_user(uid) : 0; // no walk on the warm path when off
            config_.max_bytes_per_user != 0 && held + r.bytes > config_.max_bytes_per_user)
            return refuse(connection, EDQUOT, "uid " + std::to_string(uid) + " holds " + std::to_string(held) + " bytes of leases already: "
                                                  + std::to_string(r.bytes) + " more would exceed its max_bytes_per_user of "
                                                  + std::to_string(config_.max_bytes_per_user));
        auto warm = try_acquire(r, hugezero::acquire_options{0, {}, r.name});
        const bool cold_allowed = !r.max_cold_pages || *r.max_cold_pages > 0;
        if (warm || warm.error.value() != EAGAIN || !cold_allowed)
            return deliver(connection, r, std::move(warm));
        cold_request cold{connection, next_job_++, std::move(r), std::make_shared<std::stop_source>()};
        h.pending.emplace(cold.job, cold.stop);
        h.pending_bytes += cold.r.bytes;
        cold_users_[uid].waiting.push_back(std::move(cold));
        start_cold(uid);
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

    /// Takes back every detached lease of @p tag that @p uid made, and answers once the pool
    /// has them all (with none: at once, `leases=0`).
    void release_tag(std::uint64_t connection, uid_t uid, const std::string& tag)
    {
        if (!admin(uid))
            return (void)reply_(connection, protocol::format_error(EPERM, "uid " + std::to_string(uid) + " is not among admin_users of "
                                                                              + config_.file + ": it holds no detached lease"), -1);
        std::vector<held_lease> back;
        if (const auto it = detached_.find(tag); it != detached_.end()) {
            for (auto l = it->second.begin(); l != it->second.end();)
                if (l->second.uid == uid) {
                    back.push_back(std::move(l->second));
                    l = it->second.erase(l);
                } else {
                    ++l;
                }
            if (it->second.empty())
                detached_.erase(it);
        }
        counters_.leases_detached -= back.size();
        counters_.leases_taken_back += back.size();
        if (back.empty())
            return (void)reply_(connection, protocol::format(protocol::released_reply{0, "none", tag, 0}), -1);
        auto statuses = std::make_shared<std::vector<std::string>>(back.size());
        auto left = std::make_shared<std::size_t>(back.size());
        for (std::size_t i = 0; i < back.size(); ++i)
            take_back(std::move(back[i]), "released by tag " + tag, [this, connection, tag, statuses, left, i](const std::string& status) {
                (*statuses)[i] = status;
                if (--*left == 0) {
                    std::string all;
                    for (const auto& s : *statuses)
                        all += (all.empty() ? "" : ",") + s;
                    (void)reply_(connection, protocol::format(protocol::released_reply{0, all, tag, statuses->size()}), -1);
                }
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
    // A lease out, and what was done to its file for it (undone when it comes back).
    struct held_lease {
        std::shared_ptr<hugezero::lease> lease;
        uid_t uid = static_cast<uid_t>(-1);   // who asked for it
        bool given = false;                   // its owner or mode set
        std::shared_ptr<placed_link> link{};  // a second link, placed
    };
    struct holding {
        uid_t uid = static_cast<uid_t>(-1); // the peer's
        std::uint64_t pending_bytes = 0;      // of the cold acquires in `pending`
        std::map<std::uint64_t, held_lease> leases;                             // by lease id
        std::map<std::uint64_t, std::shared_ptr<std::stop_source>> pending;     // cold acquires in flight, by job
    };

    // A cold acquire, queued or running.
    struct cold_request {
        std::uint64_t connection = 0;
        std::uint64_t job = 0;
        protocol::acquire_request r;
        std::shared_ptr<std::stop_source> stop;
    };
    // One uid's cold acquires.
    struct cold_user {
        unsigned running = 0;
        std::deque<cold_request> waiting;
    };

    // The leases, and cold acquires in progress, of every connection of @p uid, and its
    // detached leases.
    [[nodiscard]] std::size_t leases_of_user(uid_t uid) const
    {
        std::size_t n = 0;
        for (const auto& [id, h] : desks_)
            if (h.uid == uid)
                n += h.leases.size() + h.pending.size();
        for (const auto& [tag, leases] : detached_)
            n += static_cast<std::size_t>(std::count_if(leases.begin(), leases.end(), [&](const auto& l) { return l.second.uid == uid; }));
        return n;
    }

    [[nodiscard]] bool admin(uid_t uid) const
    {
        return std::find(config_.admin_users.begin(), config_.admin_users.end(), uid) != config_.admin_users.end();
    }

    // Why @p uid may not ask for what @p r asks (detach, owner, mode, place), or empty.
    [[nodiscard]] std::string admin_refusal(uid_t uid, const protocol::acquire_request& r) const
    {
        if (r.detach.empty() && !r.owner && !r.mode && r.place.empty())
            return {};
        if (!admin(uid))
            return "uid " + std::to_string(uid) + " is not among admin_users of " + config_.file
                   + ": it may not detach, give away or place a lease (detach=, owner=, mode=, place=)";
        if (!r.place.empty() && config_.place_directories.empty())
            return "no lease may be placed: " + config_.file + " sets no place_directories";
        return {};
    }

    // The bytes of the leases, and of the cold acquires in progress, of every connection of @p uid.
    [[nodiscard]] std::uint64_t bytes_of_user(uid_t uid) const
    {
        std::uint64_t n = 0;
        for (const auto& [id, h] : desks_)
            if (h.uid == uid) {
                n += h.pending_bytes;
                for (const auto& [lease_id, l] : h.leases)
                    n += l.lease->size();
            }
        for (const auto& [tag, leases] : detached_)
            for (const auto& [id, l] : leases)
                if (l.uid == uid)
                    n += l.lease->size();
        return n;
    }

    // Starts @p uid's waiting cold acquires while it has fewer than its limit running; those
    // whose connection closed meanwhile are dropped.
    void start_cold(uid_t uid)
    {
        cold_user& u = cold_users_[uid];
        while (u.running < config_.max_cold_acquires_per_user && !u.waiting.empty()) {
            cold_request c = std::move(u.waiting.front());
            u.waiting.pop_front();
            if (c.stop->stop_requested())
                continue;
            ++u.running;
            run_cold(uid, std::move(c));
        }
        if (u.running == 0 && u.waiting.empty())
            cold_users_.erase(uid);
    }

    void run_cold(uid_t uid, cold_request c)
    {
        jobs_.post([this, uid, c = std::move(c)](std::stop_token runner) -> std::function<void()> {
            const std::stop_callback relay(runner, [&] { c.stop->request_stop(); });
            auto got = std::make_shared<hugezero::acquire_result>(
                try_acquire(c.r, hugezero::acquire_options{c.r.max_cold_pages, c.stop->get_token(), c.r.name}));
            return [this, uid, connection = c.connection, job = c.job, r = c.r, got] {
                if (const auto it = desks_.find(connection); it != desks_.end()) {
                    it->second.pending.erase(job);
                    it->second.pending_bytes -= r.bytes;
                }
                --cold_users_[uid].running;
                deliver(connection, r, std::move(*got));
                start_cold(uid);
            };
        });
    }

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
        const auto d = desks_.find(connection);
        held_lease h{std::make_shared<hugezero::lease>(std::move(got.lease)), d == desks_.end() ? static_cast<uid_t>(-1) : d->second.uid};
        if (auto failed = prepare(h, r)) {
            ++counters_.leases_undelivered;
            take_back(std::move(h), "it could not be placed");
            return refuse(connection, failed->code, failed->message);
        }
        const hugezero::lease& l = *h.lease;
        const std::uint64_t id = next_lease_++;
        const protocol::lease_reply text{id, l.node().value(), l.page().kib(), l.pages(), l.cold_pages(), l.path().string()};
        if (d == desks_.end() || !reply_(connection, protocol::format(text), l.fd())) { // a failed reply closes it: `d` is gone
            ++counters_.leases_undelivered;
            return take_back(std::move(h), "its client left, or could not take it");
        }
        ++counters_.leases_granted;
        if (!r.detach.empty()) {
            detached_[r.detach].emplace(id, std::move(h));
            ++counters_.leases_detached;
            return;
        }
        d->second.leases.emplace(id, std::move(h));
        ++counters_.leases_held;
    }

    // Places the file's link, then gives it its owner and mode, as @p r asks: linking a file
    // another user owns would need CAP_FOWNER (fs.protected_hardlinks), which the unit drops.
    std::optional<placement_error> prepare(held_lease& h, const protocol::acquire_request& r)
    {
        if (!r.place.empty()) {
            auto placed = place(*h.lease, r.place, config_.place_directories, r.owner);
            if (auto* failed = std::get_if<placement_error>(&placed))
                return std::move(*failed);
            h.link = std::make_shared<placed_link>(std::move(std::get<placed_link>(placed)));
        }
        if (r.owner || r.mode) {
            h.given = true;
            return set_owner(*h.lease, r.owner, r.mode);
        }
        return std::nullopt;
    }

    // Whether leases of @p uid may be recycled (where their reservoir recycles at all).
    [[nodiscard]] bool trusted(uid_t uid) const
    {
        return std::find(config_.trusted_users.begin(), config_.trusted_users.end(), uid) != config_.trusted_users.end();
    }

    // Gives @p h back to the pool on a job thread (its link removed, its owner and mode the
    // daemon's again); then @p done(status) on the loop. Recycled only if its holder is trusted
    // and nobody else was given or shown the file.
    void take_back(held_lease h, const std::string& why, std::function<void(const std::string&)> done = nullptr)
    {
        const bool recycle = trusted(h.uid) && !h.given && !h.link;
        jobs_.post([this, l = std::move(h.lease), link = std::move(h.link), given = h.given, recycle, why,
                    done = std::move(done)](std::stop_token) -> std::function<void()> {
            if (link)
                unplace(*link);
            if (given)
                reset_owner(*l);
            hugezero::recycle_result r;
            try {
                r = recycle ? pool_.recycle(std::move(*l)) : pool_.retire(std::move(*l));
            } catch (const std::exception& e) { // the lease closes: its pages go back to the kernel
                r.status = hugezero::recycle_status::unusable;
                r.message = e.what();
            }
            return [this, word = protocol::word(r.status), message = r.message, status = r.status, why, done] {
                ++counters_.recycles[word];
                using hugezero::recycle_status;
                if (status != recycle_status::recycled && status != recycle_status::emptied) // counted, not logged
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
    std::map<std::string, std::map<std::uint64_t, held_lease>> detached_; // by tag, then lease id
    std::map<uid_t, cold_user> cold_users_;  // uids with cold acquires queued or running
    std::uint64_t next_lease_ = 1;
    std::uint64_t next_job_ = 1;
};

} // namespace hugezerod

#endif
