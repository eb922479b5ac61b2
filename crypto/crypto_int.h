/* SPDX-License-Identifier: MIT */
/*
 * crypto_int: declarations shared by the files of the crypto module and its
 * own unit tests, never included from another module. The opaque public
 * types are defined here as thin reference-counted wrappers around OpenSSL
 * objects, plus the helpers every file needs: error sentences, PEM block
 * scanning, BIO-to-buffer copies and certificate building blocks.
 */
#ifndef CERTFS_CRYPTO_INT_H
#define CERTFS_CRYPTO_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto/crypto.h"

struct crypto_key {
	atomic_int refs;
	bool priv; /* holds private material (parsed or generated) */
	EVP_PKEY *pkey;
};

struct crypto_cert {
	atomic_int refs;
	X509 *x509;
};

struct crypto_chain {
	struct crypto_cert **certs;
	size_t n, cap;
};

struct crypto_csr {
	X509_REQ *req;
};

#define CRYPTO_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Wrap pkey (owned by the result on success; on NULL the caller still owns it). */
struct crypto_key *crypto_key_wrap(EVP_PKEY *pkey, bool priv);
/* Wrap x (owned by the result on success; on NULL the caller still owns it). */
struct crypto_cert *crypto_cert_wrap(X509 *x);

/* OpenSSL's secure heap for private key material, set up on first use. */
#define CRYPTO_SECURE_HEAP (4u * 1024 * 1024)
void crypto_secure_heap(void);

/* Set err's sentence (err may be NULL). Clears the OpenSSL error queue. */
void crypto_err_set(struct crypto_err *err, const char *fmt, ...) CRYPTO_PRINTF(2, 3);
/*
 * Short reason of the oldest error in the OpenSSL queue ("wrong tag",
 * "bad decrypt") or "unknown error"; the queue is drained.
 */
const char *crypto_ssl_reason(char *buf, size_t len);

/*
 * One-line short form of a name: "CN=example.com" or
 * "C=US, O=Example, CN=Example CA", in certificate order, UTF-8 kept.
 */
void crypto_name_short(const X509_NAME *name, char *out, size_t len);

/* Digest for signing with pkey: NULL for Ed25519, SHA-384 for P-384, else SHA-256. */
const EVP_MD *crypto_sign_md(const EVP_PKEY *pkey);

/* Append all bytes of a memory BIO to out. */
int crypto_bio_to_buf(BIO *bio, struct util_buf *out);
/*
 * Append the len bytes an i2d_*() call returned in der to out and free der
 * (len <= 0 means that call failed: -ENOMEM).
 */
int crypto_der_to_buf(unsigned char *der, int len, struct util_buf *out);

/* A PEM block located in a text: "-----BEGIN <label>-----" ... END line. */
struct crypto_pem_block {
	const char *label;
	size_t label_len;
	const char *start; /* first byte of the BEGIN line */
	size_t len;        /* up to and including the END line (or to the end of data) */
	bool complete;     /* an END line with the same label was found */
};
/* Find the next block at or after *pos; advance *pos past it. */
bool crypto_pem_next(const void *data, size_t len, size_t *pos, struct crypto_pem_block *blk);
bool crypto_pem_label_is(const struct crypto_pem_block *blk, const char *label);
/*
 * Decode the base64 body of one block (CRLF tolerated) into a newly allocated
 * DER buffer (OPENSSL_malloc; free with OPENSSL_clear_free when secret).
 * 0 or -EINVAL (not valid PEM), -ENOMEM.
 */
int crypto_pem_block_decode(const struct crypto_pem_block *blk, unsigned char **der,
			    long *derlen);

/* ASN1_TIME as time_t (UTC); (time_t)-1 when it cannot be read. */
time_t crypto_asn1_time(const ASN1_TIME *t);

/* Append a strdup of s[0..len) to the string vector. */
int crypto_strv_push(char ***v, size_t *n, const char *s, size_t len);
/* DNS names from a GENERAL_NAMES list (SAN), skipping ones with bytes no host
 * name has (NUL, controls, space, non-ASCII). */
int crypto_gens_dns(const GENERAL_NAMES *gens, char ***v, size_t *n);

/* Random positive 128-bit serial number. */
int crypto_set_random_serial(X509 *x);
/* Subject "CN=cn" (omitted when cn is longer than 64 bytes, the X.520 bound). */
int crypto_name_cn(X509_NAME *name, const char *cn);
/* SAN extension of DNS names, for certificates and requests. */
GENERAL_NAMES *crypto_gens_from_names(const char *const *names, size_t n);
/* Add an extension from its OpenSSL config text (ctx gives issuer/subject). */
int crypto_x509_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value);
/* Every name passes crypto_name_validate; n >= 1. */
int crypto_names_check(const char *const *names, size_t n);

/* What is left of one upload's key derivation budget (CRYPTO_KDF_BUDGET). */
struct crypto_kdf_budget {
	uint64_t left;
};
void crypto_kdf_budget_init(struct crypto_kdf_budget *b);
/*
 * Charge times derivations of iter iterations each; -EINVAL with a
 * sentence "WHAT: iteration count N is over the limit of 600000" or the
 * budget's, and nothing charged, when they do not fit.
 */
int crypto_kdf_charge(struct crypto_kdf_budget *b, const char *what, uint64_t iter,
		      unsigned times, struct crypto_err *err);
/*
 * Charge the derivation a password-based encryption algorithm announces
 * (PKCS#5 v1.5, PKCS#12 PBE, PBES2 with PBKDF2 or scrypt), read from its
 * parameters without deriving anything. Unknown algorithms cost nothing
 * (OpenSSL refuses them without work); unreadable parameters are -EINVAL.
 */
int crypto_kdf_charge_pbe(struct crypto_kdf_budget *b, const char *what, const X509_ALGOR *alg,
			  struct crypto_err *err);

/*
 * RFC 3492 Punycode decode of in[0..inlen) (without the "xn--" prefix) into
 * at most *outlen code points. 0 and *outlen set, or -EINVAL (bad digit,
 * overflow, code point out of range, too long).
 */
int crypto_punycode_decode(const char *in, size_t inlen, uint32_t *out, size_t *outlen);

#endif
