/* hugezero_client: hugezerod's protocol (hugezero/1) spoken by a C program, as a VMM would:
 * connect, acquire a lease of warm 2 MiB pages on node 0, map it, give it back.
 *   hugezero_client [SOCKET [BYTES]]   (default /run/hugezerod/hugezerod.sock, 8 MiB)
 * docs/daemon.md, "Protocol reference", quotes this file; the daemon's tests run it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char reply[64 * 1024 + 1]; /* max_reply, and a NUL */

/* Sends one request and receives its reply into `reply`, with the fd it carries (or -1). */
static int ask(int s, const char *request, int *fd)
{
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
    struct iovec io = {.iov_base = reply, .iov_len = sizeof reply - 1};
    struct msghdr msg = {.msg_iov = &io, .msg_iovlen = 1,
                         .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    strcpy(reply, "no reply: hugezerod closed the connection");
    if (send(s, request, strlen(request), MSG_NOSIGNAL) < 0)
        return -1;
    ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0)
        return -1;
    reply[n] = '\0';
    *fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            memcpy(fd, CMSG_DATA(c), sizeof *fd);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "/run/hugezerod/hugezerod.sock";
    const char *bytes = argc > 2 ? argv[2] : "8388608";
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror(path); /* ENOENT or ECONNREFUSED: is hugezerod running? */
        return 1;
    }
    char request[128];
    snprintf(request, sizeof request, "hugezero/1 acquire node=0 page=2M bytes=%s max_cold=0", bytes);
    int fd = -1;
    unsigned long long id, page_kib, pages;
    if (ask(s, request, &fd) != 0 || fd < 0
        || sscanf(reply, "hugezero/1 lease id=%llu node=%*u page_kib=%llu pages=%llu", &id, &page_kib, &pages) != 3) {
        fprintf(stderr, "%s\n", reply); /* hugezero/1 error ENAME sentence */
        return 1;
    }
    size_t size = pages * page_kib * 1024; /* whole pages: BYTES rounded up */
    unsigned char *ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ram == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    printf("lease %llu: %zu bytes, first and last byte %d %d\n", id, size, ram[0], ram[size - 1]);
    /* Unmap and close before the release: the pages leave the file with it. */
    munmap(ram, size);
    close(fd);
    snprintf(request, sizeof request, "hugezero/1 release lease=%llu", id);
    if (ask(s, request, &fd) != 0 || strncmp(reply, "hugezero/1 released ", 20) != 0) {
        fprintf(stderr, "%s\n", reply);
        return 1;
    }
    printf("%s\n", reply);
    close(s); /* closing gives back every lease the connection still holds */
    return 0;
}
