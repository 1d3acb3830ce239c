// hugezero::test::fuse_sysfs: the simulated kernel (a hugezero::sim::sysfs_view) served as a real
// file system through FUSE, so that hugezero's real sysfs_backend - openat, pread at offset 0, one
// raw write() that blocks in the kernel while pages are zeroed, EINTR after a signal, epoll with
// EPOLLPRI and re-arming - runs against it exactly as against /sys. libgpiod tests its bindings
// against gpio-sim, a kernel simulator; this is ours. It is a test-only tool (libfuse3, low-level
// API); docs/emulator.md explains each choice and how faithful it is to kernfs.
//
// In one sentence per operation (kernfs behaviour in brackets):
// - lookup/getattr: the view's tree, zero entry and attribute timeouts, so the kernel asks again
//   every time and a node that goes offline disappears at once. Attributes are 4096 bytes long
//   [sysfs reports PAGE_SIZE], 0444, or 0644 for zeroable_hugepages.
// - open: sysfs_view::check_open (planned open faults; EACCES for writing a read-only attribute
//   [kernfs_fop_open]); every file is FOPEN_DIRECT_IO (no page cache: every pread reaches us) and
//   FOPEN_PARALLEL_DIRECT_WRITES (writers of one attribute run concurrently [kernfs does not
//   serialise different open files]).
// - read: the attribute's content, generated afresh; a read at offset 0 re-arms poll [the
//   seq_file show() of kernfs_seq_show records of->event].
// - write: sysfs_view::write in this FUSE worker thread, asking between pages whether the kernel
//   sent FUSE_INTERRUPT for the request (it does when the writer gets a signal); replies EINTR, a
//   count, or another errno as the simulated kernel decides [signal_pending() between pages].
// - poll: POLLIN|POLLOUT always, plus POLLPRI|POLLERR while the attribute's event count differs
//   from the one this open file saw at its last read at offset 0; a fresh open file starts at 0
//   and the attribute at 1, so it polls as changed until read [kernfs_generic_poll]. A change
//   notifies the kernel's poll handles (fuse_lowlevel_notify_poll).
// - read and write on one open file are serialised [kernfs's of->mutex]; different files are not.
// - an open file whose attribute was removed (its node went offline) fails every later read and
//   write with ENODEV, also if the node comes back [kernfs_get_active() fails on a removed node;
//   a re-added node is a new kernfs node].
#ifndef HUGEZERO_TESTS_EMULATOR_FUSE_SYSFS_HPP
#define HUGEZERO_TESTS_EMULATOR_FUSE_SYSFS_HPP

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312 // fuse_loop_cfg_* (libfuse 3.12+; Debian 12 has 3.14)
#endif
#include <fuse_lowlevel.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <linux/fuse.h> // struct fuse_open_out, FOPEN_*: the open reply libfuse 3.14 cannot fully express
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hugezero/detail/sysfs_paths.hpp>
#include <hugezero/sim/kernel.hpp>
#include <hugezero/sim/sysfs_view.hpp>

namespace hugezero::test {

/// Serves a simulated kernel as a sysfs-like FUSE file system mounted at a directory, with
/// libfuse's multi-threaded loop in background threads. Move-only; the destructor (or
/// unmount()) unmounts and joins the threads.
///
/// Thread safety: the kernel may be driven (allocate, release, fail_next, set_online...) from any
/// thread while mounted; the object itself is used by one thread.
class fuse_sysfs {
public:
    /// What the file system was asked to do, for tests that prove a path really went through FUSE.
    struct statistics {
        std::uint64_t opens = 0;              ///< Files opened (not directories).
        std::uint64_t reads = 0;              ///< FUSE_READ requests.
        std::uint64_t writes = 0;             ///< FUSE_WRITE requests.
        std::uint64_t interrupted_writes = 0; ///< Writes that saw FUSE_INTERRUPT between two pages.
        std::uint64_t polls = 0;              ///< FUSE_POLL requests.
        std::uint64_t poll_notifications = 0; ///< fuse_lowlevel_notify_poll() calls.
    };

    /// The name of every thread serving the file system (libfuse's workers inherit it), so that
    /// leak checks can tell them from the process's own threads.
    static constexpr const char* thread_name = "hz-fuse";

    /// Why this process cannot mount a FUSE file system, or "" when it can try.
    static std::string unavailable()
    {
        if (!std::filesystem::exists("/dev/fuse"))
            return "/dev/fuse is missing (no FUSE in this kernel, or a container without the device)";
        const int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return std::string("cannot open /dev/fuse: ") + std::strerror(errno);
        ::close(fd);
        if (::geteuid() != 0 && ::access(fusermount, X_OK) != 0)
            return std::string("not root, and no ") + fusermount + " to mount as a user (Debian package fuse3)";
        return {};
    }

    /// Mounts a view of @p kernel at the existing empty directory @p mountpoint.
    /// @throws std::runtime_error if the file system cannot be mounted (the reason is also on stderr).
    fuse_sysfs(std::shared_ptr<sim::kernel> kernel, const std::filesystem::path& mountpoint)
        : server_(std::make_unique<server>(std::move(kernel), mountpoint))
    {
        // A process that serves a FUSE mount to itself must not dump core: the dump waits for
        // every thread, one of them waits on the mount, and the threads serving it are gone, so
        // a crash (an abort() of a failed check) would leave it in D state forever, and every
        // later stat() of its files with it (a pool's /proc search among them).
        (void)::prctl(PR_SET_DUMPABLE, 0);
    }
    fuse_sysfs(fuse_sysfs&&) noexcept = default;
    /// Unmounts this file system, then takes over @p other's.
    fuse_sysfs& operator=(fuse_sysfs&&) noexcept = default;
    fuse_sysfs(const fuse_sysfs&) = delete;
    fuse_sysfs& operator=(const fuse_sysfs&) = delete;
    ~fuse_sysfs() = default;

    /// Whether mounted (false after unmount() or a move).
    explicit operator bool() const noexcept { return static_cast<bool>(server_); }
    /// Unmounts now and joins the threads. Files still open there then fail with ENOTCONN.
    void unmount() noexcept { server_.reset(); }

    /// The directory standing for /sys.
    [[nodiscard]] const std::filesystem::path& mountpoint() const { return checked().mountpoint; }
    /// The simulated kernel served.
    [[nodiscard]] const std::shared_ptr<sim::kernel>& kernel() const { return checked().view.simulated_kernel(); }
    /// What the file system was asked to do so far.
    [[nodiscard]] statistics counts() const
    {
        const server& s = checked();
        return {s.opens.load(), s.reads.load(), s.writes.load(), s.interrupted_writes.load(), s.polls.load(),
                s.poll_notifications.load()};
    }

private:
    static constexpr const char* fusermount = "/usr/bin/fusermount3";

    // Everything the FUSE callbacks use; its address is the session's userdata, so it never moves.
    class server {
    public:
        server(std::shared_ptr<sim::kernel> k, std::filesystem::path where) : view(k), mountpoint(std::move(where))
        {
            paths_.emplace_back(); // FUSE_ROOT_ID (1) is the root, ""
            inodes_.emplace(std::string(), FUSE_ROOT_ID);
            // Every zeroable_hugepages notifies through its hstate, whether or not it is visible.
            for (const hstate& h : k->hstates())
                if (k->has_zeroable_interface(h)) {
                    const std::string path
                        = detail::paths::join(detail::paths::node_hstate_dir(h), detail::paths::zeroable_hugepages);
                    subscriptions_.push_back(k->subscribe(h, [this, path] { changed(path); }));
                }
            fuse_args args = FUSE_ARGS_INIT(0, nullptr);
            std::string options = "fsname=hugezero-sysfs,subtype=hugezero-sysfs";
            // fusermount3 stays behind to unmount if this process dies (a test killed on timeout
            // must not leave a stale mount); without it, the mount is done with mount(2).
            if (::access(fusermount, X_OK) == 0)
                options += ",auto_unmount";
            for (const char* arg : {"hugezero-sysfs", "-o", options.c_str()})
                if (fuse_opt_add_arg(&args, arg) != 0)
                    throw std::runtime_error("hugezero emulator: out of memory building FUSE arguments");
            const fuse_lowlevel_ops ops = operations();
            session_ = fuse_session_new(&args, &ops, sizeof ops, this);
            fuse_opt_free_args(&args);
            if (session_ == nullptr)
                throw std::runtime_error("hugezero emulator: fuse_session_new failed");
            if (fuse_session_mount(session_, mountpoint.c_str()) != 0) {
                fuse_session_destroy(session_);
                throw std::runtime_error("hugezero emulator: cannot mount a FUSE file system at " + mountpoint.string()
                                         + " (see the message above)");
            }
            loop_ = std::thread([this] { serve(); });
        }
        server(const server&) = delete;
        server& operator=(const server&) = delete;

        ~server()
        {
            fuse_session_exit(session_);
            unmount_now();
            loop_.join();
            for (auto& s : subscriptions_) // no notification reaches this object from now on
                s.reset();
            for (auto& [fh, file] : files_)
                if (file->poll != nullptr)
                    fuse_pollhandle_destroy(file->poll);
            fuse_session_unmount(session_); // closes the device (the mount is gone already)
            fuse_session_destroy(session_);
        }

        sim::sysfs_view view;
        std::filesystem::path mountpoint;
        std::atomic<std::uint64_t> opens{0}, reads{0}, writes{0}, interrupted_writes{0}, polls{0}, poll_notifications{0};

    private:
        struct open_file {
            std::string path;
            std::uint64_t opened_epoch = 0;  // removals recorded after this one kill the file
            std::uint64_t event = 0;         // the attribute's event count at the last read at offset 0
            fuse_pollhandle* poll = nullptr; // the kernel's latest poll handle, under mutex_
            std::mutex operation;            // kernfs's of->mutex: one read or write at a time
        };
        struct directory_entry {
            std::string name;
            fuse_ino_t ino;
            bool is_directory;
        };

        static server& self(fuse_req_t req) { return *static_cast<server*>(fuse_req_userdata(req)); }

        static fuse_lowlevel_ops operations()
        {
            fuse_lowlevel_ops ops{};
            ops.lookup = [](fuse_req_t req, fuse_ino_t parent, const char* name) { self(req).lookup(req, parent, name); };
            ops.getattr = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info*) { self(req).getattr(req, ino); };
            ops.opendir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { self(req).opendir(req, ino, fi); };
            ops.readdir = [](fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
                self(req).readdir(req, size, off, fi);
            };
            ops.releasedir = [](fuse_req_t req, fuse_ino_t, fuse_file_info* fi) { self(req).releasedir(req, fi); };
            ops.open = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { self(req).open(req, ino, fi); };
            ops.read = [](fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
                self(req).read(req, size, off, fi);
            };
            ops.write = [](fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t, fuse_file_info* fi) {
                self(req).write(req, std::string_view(buf, size), fi);
            };
            ops.poll = [](fuse_req_t req, fuse_ino_t, fuse_file_info* fi, fuse_pollhandle* ph) {
                self(req).poll(req, fi, ph);
            };
            ops.release = [](fuse_req_t req, fuse_ino_t, fuse_file_info* fi) { self(req).release(req, fi); };
            return ops;
        }

        void serve()
        {
            // Signals meant for the process (a test's SIGINT, SIGCHLD...) are not for the workers,
            // whose simulated zeroing must only end between pages; they inherit this mask and name.
            sigset_t all;
            sigfillset(&all);
            ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
            ::pthread_setname_np(::pthread_self(), thread_name);
            fuse_loop_config* config = fuse_loop_cfg_create();
            fuse_loop_cfg_set_clone_fd(config, 0);
            fuse_loop_cfg_set_max_threads(config, 256); // every blocked writer holds a worker
            fuse_loop_cfg_set_idle_threads(config, 16);
            (void)fuse_session_loop_mt(session_, config);
            fuse_loop_cfg_destroy(config);
        }

        // Ends the loop: once the superblock is gone the kernel aborts the connection, so the
        // workers' reads of /dev/fuse fail with ENODEV. A file still open keeps the superblock:
        // then MNT_FORCE aborts the connection itself (fuse_umount_begin) and the mount is
        // detached, so this never hangs.
        void unmount_now() noexcept
        {
            if (::umount2(mountpoint.c_str(), UMOUNT_NOFOLLOW) == 0)
                return;
            (void)::umount2(mountpoint.c_str(), MNT_FORCE | UMOUNT_NOFOLLOW);
            (void)::umount2(mountpoint.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
        }

        // ----- inodes: one per path ever looked up, kept for the life of the mount -----

        std::optional<std::string> path_of(fuse_ino_t ino)
        {
            const std::lock_guard lock(mutex_);
            if (ino == 0 || ino > paths_.size())
                return std::nullopt;
            return paths_[ino - 1];
        }
        fuse_ino_t inode_of(const std::string& path)
        {
            const std::lock_guard lock(mutex_);
            const auto [it, added] = inodes_.emplace(path, paths_.size() + 1);
            if (added)
                paths_.push_back(path);
            return it->second;
        }
        static std::string child(const std::string& dir, std::string_view name)
        {
            return dir.empty() ? std::string(name) : detail::paths::join(dir, name);
        }
        static std::string parent(const std::string& path)
        {
            const auto slash = path.rfind('/');
            return slash == std::string::npos ? std::string() : path.substr(0, slash);
        }

        static struct stat attributes(fuse_ino_t ino, const sim::sysfs_view::entry& e)
        {
            struct stat st {};
            st.st_ino = ino;
            if (e.type == sim::sysfs_view::kind::directory) {
                st.st_mode = S_IFDIR | 0755;
                st.st_nlink = 2;
            } else {
                st.st_mode = S_IFREG | (e.writable ? 0644 : 0444);
                st.st_nlink = 1;
                st.st_size = 4096; // as sysfs reports; also keeps writes within EOF, as parallel writes need
            }
            st.st_blksize = 4096;
            return st;
        }

        // ----- removals: kernfs kills open files of a removed node -----

        void note_missing(const std::string& path)
        {
            const std::lock_guard lock(mutex_);
            removed_[path] = ++epoch_;
        }
        bool dead(const open_file& f)
        {
            const std::lock_guard lock(mutex_);
            return dead_locked(f);
        }
        bool dead_locked(const open_file& f) const
        {
            for (std::size_t end = 0; end != std::string::npos;) {
                end = f.path.find('/', end + 1);
                const auto it = removed_.find(f.path.substr(0, end));
                if (it != removed_.end() && it->second > f.opened_epoch)
                    return true;
            }
            return false;
        }
        // The errno for an operation on an open file that failed with @p error: a failure because
        // the attribute is gone is ENODEV (and final); any other (a planned fault) is kept.
        int open_file_error(open_file& f, int error)
        {
            if (error == ENOENT && view.stat(f.path).type == sim::sysfs_view::kind::missing) {
                note_missing(f.path);
                return ENODEV;
            }
            return error;
        }

        std::shared_ptr<open_file> file(fuse_file_info* fi)
        {
            const std::lock_guard lock(mutex_);
            const auto it = files_.find(fi->fh);
            return it == files_.end() ? nullptr : it->second;
        }

        // ----- operations -----

        void lookup(fuse_req_t req, fuse_ino_t parent_ino, const char* name)
        {
            const auto dir = path_of(parent_ino);
            if (!dir)
                return (void)fuse_reply_err(req, ENOENT);
            const std::string path = child(*dir, name);
            const auto e = view.stat(path);
            if (e.type == sim::sysfs_view::kind::missing) {
                note_missing(path);
                return (void)fuse_reply_err(req, ENOENT);
            }
            fuse_entry_param entry{};
            entry.ino = inode_of(path);
            entry.attr = attributes(entry.ino, e);
            entry.attr_timeout = 0;
            entry.entry_timeout = 0;
            fuse_reply_entry(req, &entry);
        }

        void getattr(fuse_req_t req, fuse_ino_t ino)
        {
            const auto path = path_of(ino);
            const auto e = path ? view.stat(*path) : sim::sysfs_view::entry{};
            if (e.type == sim::sysfs_view::kind::missing)
                return (void)fuse_reply_err(req, ENOENT);
            const struct stat st = attributes(ino, e);
            fuse_reply_attr(req, &st, 0);
        }

        void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi)
        {
            const auto path = path_of(ino);
            if (!path)
                return (void)fuse_reply_err(req, ENOENT);
            const auto listing = view.list(*path);
            if (listing.error != 0)
                return (void)fuse_reply_err(req, listing.error);
            auto entries = std::make_shared<std::vector<directory_entry>>();
            entries->push_back({".", ino, true});
            entries->push_back({"..", path->empty() ? ino : inode_of(parent(*path)), true});
            for (const auto& name : listing.names) {
                const std::string p = child(*path, name);
                entries->push_back({name, inode_of(p), view.stat(p).type == sim::sysfs_view::kind::directory});
            }
            {
                const std::lock_guard lock(mutex_);
                fi->fh = ++next_handle_;
                directories_.emplace(fi->fh, entries);
            }
            fuse_reply_open(req, fi);
        }

        void readdir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi)
        {
            std::shared_ptr<std::vector<directory_entry>> entries;
            {
                const std::lock_guard lock(mutex_);
                const auto it = directories_.find(fi->fh);
                if (it == directories_.end())
                    return (void)fuse_reply_err(req, EBADF);
                entries = it->second;
            }
            std::string buffer(size, '\0');
            std::size_t used = 0;
            for (auto i = static_cast<std::size_t>(std::max<off_t>(off, 0)); i < entries->size(); ++i) {
                const auto& e = (*entries)[i];
                struct stat st {};
                st.st_ino = e.ino;
                st.st_mode = e.is_directory ? S_IFDIR : S_IFREG;
                const std::size_t need = fuse_add_direntry(req, nullptr, 0, e.name.c_str(), nullptr, 0);
                if (used + need > size)
                    break;
                fuse_add_direntry(req, buffer.data() + used, size - used, e.name.c_str(), &st, static_cast<off_t>(i + 1));
                used += need;
            }
            fuse_reply_buf(req, buffer.data(), used);
        }

        void releasedir(fuse_req_t req, fuse_file_info* fi)
        {
            {
                const std::lock_guard lock(mutex_);
                directories_.erase(fi->fh);
            }
            fuse_reply_err(req, 0);
        }

        void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi)
        {
            const auto path = path_of(ino);
            if (!path)
                return (void)fuse_reply_err(req, ENOENT);
            const bool for_writing = (fi->flags & O_ACCMODE) != O_RDONLY;
            if (const int error = view.check_open(*path, for_writing ? sim::operation::write : sim::operation::read))
                return (void)fuse_reply_err(req, error);
            auto f = std::make_shared<open_file>();
            f->path = *path;
            fuse_open_out out{};
            {
                const std::lock_guard lock(mutex_);
                f->opened_epoch = epoch_;
                out.fh = ++next_handle_;
                files_.emplace(out.fh, f);
            }
            ++opens;
            // libfuse 3.14's fuse_reply_open() cannot ask for FOPEN_PARALLEL_DIRECT_WRITES (3.15
            // can), so the reply is sent as the kernel defines it. Without that flag the kernel
            // would serialise direct writes to one inode, which kernfs never does.
            out.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
            if (fuse_reply_buf(req, reinterpret_cast<const char*>(&out), sizeof out) == -ENOENT) {
                const std::lock_guard lock(mutex_); // the open was interrupted: no release will come
                files_.erase(out.fh);
            }
        }

        void read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi)
        {
            const auto f = file(fi);
            if (!f)
                return (void)fuse_reply_err(req, EBADF);
            ++reads;
            const std::lock_guard serialised(f->operation);
            if (dead(*f))
                return (void)fuse_reply_err(req, ENODEV);
            const std::uint64_t event = event_of(f->path); // kernfs_seq_show: the event, then the content
            auto result = view.read(f->path);
            if (result.error != 0)
                return (void)fuse_reply_err(req, open_file_error(*f, result.error));
            if (off == 0) {
                const std::lock_guard lock(mutex_);
                f->event = event;
            }
            const auto start = std::min(result.content.size(), static_cast<std::size_t>(std::max<off_t>(off, 0)));
            const std::size_t length = std::min(size, result.content.size() - start);
            fuse_reply_buf(req, result.content.data() + start, length);
        }

        void write(fuse_req_t req, std::string_view request, fuse_file_info* fi)
        {
            const auto f = file(fi);
            if (!f)
                return (void)fuse_reply_err(req, EBADF);
            ++writes;
            const std::lock_guard serialised(f->operation);
            if (dead(*f))
                return (void)fuse_reply_err(req, ENODEV);
            // The kernel sends one FUSE_INTERRUPT per request, the first time the writer has a
            // signal pending (later signals stay pending until the write returns): the probe
            // reports it once, as the simulated kernel consumes what it is told.
            bool reported = false;
            const sim::interrupt_probe interrupted = [this, req, &reported] {
                if (reported || fuse_req_interrupted(req) == 0)
                    return false;
                reported = true;
                ++interrupted_writes;
                return true;
            };
            const write_outcome outcome = view.write(f->path, request, interrupted);
            if (!outcome.succeeded())
                return (void)fuse_reply_err(req, open_file_error(*f, outcome.error));
            fuse_reply_write(req, outcome.bytes_written);
        }

        void poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph)
        {
            const auto f = file(fi);
            if (!f) {
                if (ph != nullptr)
                    fuse_pollhandle_destroy(ph);
                return (void)fuse_reply_err(req, EBADF);
            }
            ++polls;
            const bool gone = dead(*f);
            unsigned revents = POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM; // kernfs's DEFAULT_POLLMASK
            {
                const std::lock_guard lock(mutex_);
                if (ph != nullptr) { // keep only the latest: the kernel wakes the file, not the handle
                    if (f->poll != nullptr)
                        fuse_pollhandle_destroy(f->poll);
                    f->poll = ph;
                }
                if (gone || f->event != event_locked(f->path))
                    revents |= POLLERR | POLLPRI;
            }
            fuse_reply_poll(req, revents);
        }

        void release(fuse_req_t req, fuse_file_info* fi)
        {
            {
                const std::lock_guard lock(mutex_);
                const auto it = files_.find(fi->fh);
                if (it != files_.end()) {
                    if (it->second->poll != nullptr)
                        fuse_pollhandle_destroy(it->second->poll);
                    it->second->poll = nullptr;
                    files_.erase(it);
                }
            }
            fuse_reply_err(req, 0);
        }

        // ----- notifications -----

        std::uint64_t event_locked(const std::string& path) const
        {
            const auto it = events_.find(path);
            return it == events_.end() ? 1 : it->second; // kernfs starts an attribute's count at 1
        }
        std::uint64_t event_of(const std::string& path)
        {
            const std::lock_guard lock(mutex_);
            return event_locked(path);
        }

        // Called by the simulated kernel (with its lock held) when @p path changed: like
        // kernfs_notify(), bump the count and wake every poller of the attribute.
        void changed(const std::string& path)
        {
            const std::lock_guard lock(mutex_);
            const auto [it, added] = events_.emplace(path, 1);
            ++it->second;
            for (auto& [fh, f] : files_) // a removed attribute's files are not woken [kernfs_notify]
                if (f->path == path && f->poll != nullptr && !dead_locked(*f)) {
                    (void)fuse_lowlevel_notify_poll(f->poll); // fails harmlessly once unmounted
                    fuse_pollhandle_destroy(f->poll);
                    f->poll = nullptr;
                    ++poll_notifications;
                }
        }

        fuse_session* session_ = nullptr;
        std::mutex mutex_; // everything below; never held while calling the simulated kernel
        std::vector<std::string> paths_;                     // inode - 1 -> path
        std::map<std::string, fuse_ino_t> inodes_;           // path -> inode
        std::map<std::uint64_t, std::shared_ptr<open_file>> files_;
        std::map<std::uint64_t, std::shared_ptr<std::vector<directory_entry>>> directories_;
        std::uint64_t next_handle_ = 0;
        std::map<std::string, std::uint64_t> events_;        // attribute -> kernfs event count
        std::map<std::string, std::uint64_t> removed_;       // path -> epoch it was last seen missing
        std::uint64_t epoch_ = 0;
        std::vector<sim::kernel::subscription> subscriptions_;
        std::thread loop_; // last: it runs fuse_session_loop_mt over everything above
    };

    const server& checked() const
    {
        if (!server_)
            throw std::logic_error("hugezero emulator: used after unmount() or a move");
        return *server_;
    }

    std::unique_ptr<server> server_;
};

} // namespace hugezero::test

#endif
