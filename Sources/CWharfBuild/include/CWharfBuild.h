#ifndef C_WHARF_BUILD_H
#define C_WHARF_BUILD_H

/// The commit this binary was built from (WHARF_COMMIT at build time), or "unknown".
const char *wharf_build_commit(void);

#endif
