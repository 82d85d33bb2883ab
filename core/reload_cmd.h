#ifndef GTM_RELOAD_CMD_H
#define GTM_RELOAD_CMD_H

/* gtmd reload: 0 when the running server took the request, 1 when it could
 * not be reached or refused, 2 on bad settings. */
int reload_command(void);

#endif
