#include "CWharfBuild.h"

// Package.swift defines WHARF_COMMIT (a quoted hex string) when the build's environment sets it.
#ifndef WHARF_COMMIT
#define WHARF_COMMIT "unknown"
#endif

const char *wharf_build_commit(void) { return WHARF_COMMIT; }
