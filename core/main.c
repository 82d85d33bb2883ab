#include <stdio.h>
#include "gtm_paths.h"
int main(void) { puts("gtmd " GTM_VERSION); return 0; }
