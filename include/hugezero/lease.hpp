/// @file
/// @brief hugezero::lease, the move-only handle to one hugetlb file leased from a pool.
#ifndef HUGEZERO_LEASE_HPP
#define HUGEZERO_LEASE_HPP

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>

#include <filesystem>

#include <hugezero/detail/bytes_text.hpp>
#include <hugezero/detail/pool/reservoir_directory.hpp>
#include <hugezero/error.hpp>
#include <hugezero/hstate.hpp>
#include <hugezero/mapping.hpp>
#include <hugezero/unique_fd.hpp>

namespace hugezero {

namespace detail {

/// Who hears about a lease when it is closed (the pool that made it: its statistics and its
/// refill, which may have been waiting for free pages).
class lease_owner {
public:
    virtual ~lease_owner() = default;
    /// A lease of @p pages pages of @p which, made with @p ticket, was closed (@p pages_back:
    /// its pages went back to the kernel, unless something else still refers to the file) or
    /// released (they did not).
    virtual void lease_closed(const hstate& which, std::uint64_t pages, bool pages_back, std::uint64_t ticket) noexcept = 0;
};

struct lease_access;

} // namespace detail

/// One hugetlb memory file of exactly size() bytes, every page allocated, zeroed by the
/// kernel, and on node(): guest memory ready to be mapped.
///
/// A lease owns one file descriptor (`O_CLOEXEC`). Hand the memory over by
/// - mapping it: map() (always shared: a private mapping would copy every page);
/// - sending the fd to another process: send_lease() (fd_passing.hpp);
/// - passing it to QEMU: dup() it without `O_CLOEXEC` in the child and name it
///   `/proc/self/fd/<n>` in a `memory-backend-file` (see docs/qemu.md).
///
/// Closing the lease (or destroying it) closes its fd; the kernel takes the pages back, dirty,
/// once nothing else refers to the file (no other fd, no mapping) and zeroes them again before
/// anyone gets them. Move-only; every accessor of a closed or moved-from lease throws
/// hugezero::closed_handle_error.
///
/// @par Thread safety
/// Distinct leases are independent. One lease's const members may be called concurrently;
/// close(), release() and assignment must not race other uses of the same lease.
class lease {
public:
    /// An empty (closed) lease.
    lease() noexcept = default;
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    /// Takes over @p other; @p other is left closed.
    lease(lease&& other) noexcept
        : fd_(std::move(other.fd_)), which_(other.which_), pages_(std::exchange(other.pages_, 0)),
          cold_pages_(std::exchange(other.cold_pages_, 0)), ticket_(std::exchange(other.ticket_, 0)),
          owner_(std::move(other.owner_)), name_(std::move(other.name_))
    {
    }
    /// Closes this lease, then takes over @p other.
    lease& operator=(lease&& other) noexcept
    {
        if (this != &other) {
            close();
            fd_ = std::move(other.fd_);
            which_ = other.which_;
            pages_ = std::exchange(other.pages_, 0);
            cold_pages_ = std::exchange(other.cold_pages_, 0);
            ticket_ = std::exchange(other.ticket_, 0);
            owner_ = std::move(other.owner_);
            name_ = std::move(other.name_);
        }
        return *this;
    }
    /// Closes the lease.
    ~lease() { close(); }

    /// Whether the lease is open.
    explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

    /// The file descriptor (`O_CLOEXEC`), owned by the lease.
    /// @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] int fd() const
    {
        check("fd()");
        return fd_.get();
    }
    /// The file's size in bytes: the size asked for, rounded up to whole pages.
    /// @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] std::uint64_t size() const
    {
        check("size()");
        return pages_ * which_.size.bytes();
    }
    /// The number of pages.
    /// @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] std::uint64_t pages() const
    {
        check("pages()");
        return pages_;
    }
    /// The page size. @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] hugezero::page_size page() const
    {
        check("page()");
        return which_.size;
    }
    /// The node every page is on. @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] node_id node() const
    {
        check("node()");
        return which_.node;
    }
    /// The node and page size. @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] const hstate& which() const
    {
        check("which()");
        return which_;
    }
    /// How many pages were not ready in the reservoir and were allocated (and zeroed) while
    /// the lease was being made: what the caller waited for.
    /// @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] std::uint64_t cold_pages() const
    {
        check("cold_pages()");
        return cold_pages_;
    }
    /// How many pages came ready (allocated and zeroed ahead of time) from the reservoir.
    /// @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] std::uint64_t warm_pages() const
    {
        check("warm_pages()");
        return pages_ - cold_pages_;
    }

    /// The file's path, for a lease from a named reservoir (reservoir_options::directory):
    /// what QEMU's `mem-path=`, Cloud Hypervisor's `--memory-zone file=` or libvirt's file
    /// memory backing opens, named as acquire_options::name said. Empty for a memfd (name
    /// `/proc/self/fd/<fd>` instead, see docs/qemu.md). The path goes with the lease: closing
    /// it removes the file (its pages go back once nothing holds it open).
    /// @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] std::filesystem::path path() const
    {
        check("path()");
        return name_.path();
    }

    /// Maps the whole file shared and read-write, as guest memory.
    /// @throws hugezero::closed_handle_error if the lease is closed; std::system_error if mmap fails.
    [[nodiscard]] mapping map() const { return mapping::map_shared(fd(), size(), page()); }

    /// Closes the fd now and tells the pool (the pages go back to the kernel unless another fd
    /// or a mapping still refers to the file). Does nothing if already closed.
    void close() noexcept
    {
        if (!fd_)
            return;
        fd_.reset();
        name_ = {}; // a named file goes with the lease
        notify_owner(true);
    }

    /// Gives up ownership of the fd: the caller closes it. The pool counts the lease as
    /// returned (its pages are the caller's to free, and a named file's path too: it stays).
    /// The lease is left closed.
    /// @throws hugezero::closed_handle_error if the lease is closed.
    [[nodiscard]] int release()
    {
        check("release()");
        const int fd = fd_.release();
        name_.keep();
        notify_owner(false);
        return fd;
    }

    /// Prints e.g. `lease of 256MiB on node0/2MiB (128 pages, 0 cold), fd 7` or `lease (closed)`.
    friend std::ostream& operator<<(std::ostream& out, const lease& l)
    {
        if (!l)
            return out << "lease (closed)";
        return out << "lease of " << detail::bytes_text(l.pages_ * l.which_.size.bytes()) << " on " << l.which_ << " ("
                   << l.pages_ << (l.pages_ == 1 ? " page, " : " pages, ") << l.cold_pages_ << " cold), fd " << l.fd_.get()
                   << (l.name_ ? ", " + l.name_.path().string() : std::string());
    }

private:
    friend struct detail::lease_access;

    lease(unique_fd fd, const hstate& which, std::uint64_t pages, std::uint64_t cold_pages,
          std::shared_ptr<detail::lease_owner> owner, std::uint64_t ticket, detail::file_name name) noexcept
        : fd_(std::move(fd)), which_(which), pages_(pages), cold_pages_(cold_pages), ticket_(ticket), owner_(std::move(owner)),
          name_(std::move(name))
    {
    }

    void check(const char* what) const
    {
        if (!fd_)
            throw closed_handle_error(std::string("lease::") + what + " on a closed lease");
    }

    void notify_owner(bool pages_back) noexcept
    {
        if (auto owner = std::exchange(owner_, nullptr))
            owner->lease_closed(which_, pages_, pages_back, ticket_);
        pages_ = 0;
        cold_pages_ = 0;
        ticket_ = 0;
    }

    unique_fd fd_;
    hstate which_{node_id(0), page_2mib};
    std::uint64_t pages_ = 0;
    std::uint64_t cold_pages_ = 0;
    std::uint64_t ticket_ = 0; // the owner's name for it (0: none)
    std::shared_ptr<detail::lease_owner> owner_;
    detail::file_name name_; // a named reservoir's file: removed with the lease
};

namespace detail {

/// Makes leases: the pool, and receive_lease() for a lease that came over a socket.
struct lease_access {
    static lease make(unique_fd fd, const hstate& which, std::uint64_t pages, std::uint64_t cold_pages,
                      std::shared_ptr<lease_owner> owner, std::uint64_t ticket = 0, file_name name = {}) noexcept
    {
        return lease(std::move(fd), which, pages, cold_pages, std::move(owner), ticket, std::move(name));
    }
    /// Takes @p l's file name (a named reservoir's), before take_fd(): the pool keeps the file.
    static file_name take_name(lease& l) noexcept { return std::move(l.name_); }
    /// @p l's ticket (0: none).
    static std::uint64_t ticket_of(const lease& l) noexcept { return l.ticket_; }
    /// Who @p l reports its end to (null for a closed lease).
    static const lease_owner* owner_of(const lease& l) noexcept { return l.owner_.get(); }
    /// Takes @p l's fd: the owner counts the lease as ended with its pages kept. @p l is left
    /// closed.
    static unique_fd take_fd(lease& l) noexcept
    {
        unique_fd fd = std::move(l.fd_);
        l.notify_owner(false);
        return fd;
    }
};

} // namespace detail

} // namespace hugezero

#endif
