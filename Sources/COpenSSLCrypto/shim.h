#ifndef COPENSSLCRYPTO_SHIM_H
#define COPENSSLCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/sha.h>
#endif
