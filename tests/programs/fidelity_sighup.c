/* A daemon that reloads on SIGHUP (issue 9): it binds and listens first (under a
 * listen rule that starts the RINA stack's thread), then blocks SIGHUP and reads it
 * from a signalfd, as daemons do for reload.
 *
 *     fidelity_sighup PORT
 *
 * Prints "ready" once SIGHUP is blocked and the signalfd made, then "got SIGHUP" when
 * it reads the signal, and exits 0. Had a thread that does not block SIGHUP (the
 * stack's, before the fix) taken it, the process would die of it (exit 129).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0)
        die("socket");
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0)
        die("bind");
    if (listen(l, 4) != 0)
        die("listen");

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        die("sigprocmask");
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0)
        die("signalfd");
    printf("ready\n");
    fflush(stdout);

    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof si);
    if (n != (ssize_t)sizeof si)
        die("read signalfd");
    if (si.ssi_signo != SIGHUP) {
        printf("got signal %u\n", si.ssi_signo);
        return 1;
    }
    printf("got SIGHUP\n");
    fflush(stdout);
    close(sfd);
    close(l);
    return 0;
}
