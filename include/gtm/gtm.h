/* The one header a gtmd module includes. */
#ifndef GTM_GTM_H
#define GTM_GTM_H
#include "module.h"
#include "host.h"
#endif
