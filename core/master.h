/* Several worker processes (GTM_WORKERS > 1): the master binds the
 * listeners once, forks the workers (each inherits the sockets and runs its
 * own loop, pools and module instances), relays SIGTERM/SIGINT, and starts a
 * new worker when one dies.  With one worker there is no master. */
#ifndef GTM_MASTER_H
#define GTM_MASTER_H

#include "config.h"

/* Runs one worker in this process: its loop until it stops.  Returns the
 * process's exit status. */
typedef int (*worker_main_fn)(struct config *cfg);

/* Binds the listeners into cfg (listen_fd), forks the workers and supervises
 * them until told to stop.  Returns the master's exit status (2 when a
 * listener cannot be bound). */
int master_run(struct config *cfg, worker_main_fn worker_main);

#endif
