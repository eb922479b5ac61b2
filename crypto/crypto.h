/* SPDX-License-Identifier: MIT */
/*
 * crypto: everything certfs knows about keys, certificates, CSRs and PKCS#12,
 * and the only module that includes OpenSSL headers. Other modules hold the
 * opaque objects below and ask this module to judge, convert and sign; key
 * material never leaves it except as PEM/PKCS#12 bytes in secret buffers.
 *
 * Conventions (BoringSSL's API-CONVENTIONS): _new/_dup/_parse give an owned
 * object, _get0 a borrowed one; _free(NULL) is a no-op. Fallible functions
 * return 0 or -errno (-EINVAL for bad content, -ENOMEM) and, when given a
 * struct crypto_err, leave there one human sentence that names the problem
 * (it is what a user reads in `status`). Nothing here prompts on a terminal.
 * All functions are thread-safe on distinct objects; objects are immutable
 * after creation and may be shared read-only between threads.
 */
#ifndef CERTFS_CRYPTO_H
#define CERTFS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "util/util.h"

#define CRYPTO_WUR __attribute__((warn_unused_result))

struct crypto_err {
	char msg[512];
};

/*
 * Limits on the work one upload may ask for; each refusal is -EINVAL with a
 * sentence that names the limit. Real files stay far below them.
 *
 * CRYPTO_KDF_ITER_MAX: iterations of one password-based key derivation
 * (PBKDF2, the PKCS#12 KDF, scrypt's N*r*p). OpenSSL writes 2048, Windows
 * up to 10000, a few tools 100000; 600000 is OWASP's advice for PBKDF2-SHA256
 * and costs about a quarter of a second.
 * CRYPTO_KDF_BUDGET: all derivations of one upload together (MAC, key bag,
 * encrypted certificates, the second try of an empty password).
 * CRYPTO_CHAIN_MAX: certificates in one upload (leaf, intermediates,
 * cross-signs, a root).
 * CRYPTO_CHAIN_VERIFY_MAX: signature checks while ordering one chain.
 * CRYPTO_PASS_MAX: passphrase bytes (OpenSSL's PEM callback takes 1024).
 * CRYPTO_NAMES_MAX: names in a CSR or a names file (a public CA's limit).
 */
#define CRYPTO_KDF_ITER_MAX 600000u
#define CRYPTO_KDF_BUDGET 2000000u
#define CRYPTO_CHAIN_MAX 16
#define CRYPTO_CHAIN_VERIFY_MAX 64
#define CRYPTO_PASS_MAX 1024
#define CRYPTO_NAMES_MAX 100

struct crypto_key;   /* private key, or public-only (from a CSR or cert) */
struct crypto_cert;  /* one X.509 certificate */
struct crypto_chain; /* ordered list of certificates */
struct crypto_csr;   /* PKCS#10 request */

enum crypto_key_type {
	CRYPTO_KEY_EC256,
	CRYPTO_KEY_EC384,
	CRYPTO_KEY_RSA2048,
	CRYPTO_KEY_RSA3072,
	CRYPTO_KEY_RSA4096,
	CRYPTO_KEY_ED25519,
	CRYPTO_KEY_OTHER, /* parsed but outside the policy (e.g. RSA 1024, P-521) */
};

/* "ec256", "rsa2048", ... ("other" for CRYPTO_KEY_OTHER). */
const char *crypto_key_type_name(enum crypto_key_type t);
/* Parse a config name; -EINVAL for anything else. */
int crypto_key_type_parse(const char *name, enum crypto_key_type *out) CRYPTO_WUR;

/* ---- keys -------------------------------------------------------------- */

int crypto_key_generate(enum crypto_key_type t, struct crypto_key **out) CRYPTO_WUR;
/*
 * Parse one PEM private key: PKCS#8 ("PRIVATE KEY"), encrypted PKCS#8
 * ("ENCRYPTED PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY", also with legacy
 * "Proc-Type: 4,ENCRYPTED" headers) or SEC1 ("EC PRIVATE KEY"). pass may be
 * NULL. Errors (-EINVAL) with their sentences:
 *   "key is encrypted: write the passphrase to passphrase first" (no pass),
 *   "passphrase does not decrypt the private key" (wrong pass),
 *   "no private key found", "more than one private key found",
 *   "private key is not valid PEM".
 * Certificates or other blocks next to the key are ignored.
 */
int crypto_key_parse_pem(const void *pem, size_t len, const char *pass,
			 struct crypto_key **out, struct crypto_err *err) CRYPTO_WUR;
/* True if the input holds a "PRIVATE KEY" PEM block of any kind. */
bool crypto_pem_has_key(const void *pem, size_t len);
/* True if the input holds at least one CERTIFICATE PEM block. */
bool crypto_pem_has_cert(const void *pem, size_t len);
/* Append the unencrypted PKCS#8 PEM of a private key (out should be secret);
 * -EINVAL for a public-only key. */
int crypto_key_to_pem(const struct crypto_key *k, struct util_buf *out) CRYPTO_WUR;
/* Append the SubjectPublicKeyInfo PEM (public part only). */
int crypto_key_public_pem(const struct crypto_key *k, struct util_buf *out) CRYPTO_WUR;
bool crypto_key_is_private(const struct crypto_key *k);
/* CRYPTO_KEY_OTHER also for RSA sizes other than 2048/3072/4096 (e.g. 8192),
 * which the policy below still accepts. */
enum crypto_key_type crypto_key_type_of(const struct crypto_key *k);
/*
 * Key strength policy: RSA >= 2048 bits with an odd public exponent from 3
 * to 2^256, EC P-256/P-384, Ed25519. Refused by name, e.g. "RSA key of 1024
 * bits is too weak (at least 2048)", "RSA public exponent 1 is not allowed
 * (an odd number from 3, usually 65537)",
 * "EC curve secp521r1 is not allowed (P-256 or P-384)", "DSA keys are not allowed".
 */
int crypto_key_check_policy(const struct crypto_key *k, struct crypto_err *err) CRYPTO_WUR;
/* Public halves equal (any key type; either side may be public-only). */
bool crypto_key_same_public(const struct crypto_key *a, const struct crypto_key *b);
struct crypto_key *crypto_key_up_ref(struct crypto_key *k);
/* Frees, wiping private material (OpenSSL clears key limbs on free). */
void crypto_key_free(struct crypto_key *k);

/* ---- certificates ------------------------------------------------------ */

/*
 * Parse every certificate in data: PEM (any number of CERTIFICATE blocks,
 * other blocks such as keys skipped, CRLF and a UTF-8 BOM tolerated) or a
 * single DER certificate. -EINVAL "no certificate found" / "certificate N is
 * not valid: ..." / "trailing data after DER certificate".
 */
int crypto_chain_parse(const void *data, size_t len, struct crypto_chain **out,
		       struct crypto_err *err) CRYPTO_WUR;
struct crypto_chain *crypto_chain_new(void);
/* Append a reference to c (the chain takes its own reference). */
int crypto_chain_push(struct crypto_chain *ch, struct crypto_cert *c) CRYPTO_WUR;
size_t crypto_chain_count(const struct crypto_chain *ch);
struct crypto_cert *crypto_chain_get0(const struct crypto_chain *ch, size_t i);
void crypto_chain_free(struct crypto_chain *ch);
/* Append all certificates as PEM, in order, LF line ends. */
int crypto_chain_to_pem(const struct crypto_chain *ch, struct util_buf *out) CRYPTO_WUR;

/*
 * Order certificates given in any order: leaf first, each certificate
 * signed by the next (checked by signature, not by name alone); a
 * self-signed root at the end is dropped. Refusals (-EINVAL):
 *   "chain: certificate 'CN=x' is not issued by 'CN=y'",
 *   "chain: certificate 'CN=x' does not belong to the chain",
 *   "chain: missing the certificate that issued 'CN=x' (issuer 'CN=y')"
 *     (only when a later certificate in the input shows the gap),
 *   "chain: more than one leaf certificate",
 *   "chain: no leaf certificate" (e.g. only self-signed roots),
 *   "chain: no certificate" (empty input).
 * Duplicates are kept once. A lone self-signed certificate is its own chain.
 */
int crypto_chain_sort(const struct crypto_chain *in, struct crypto_chain **out,
		      struct crypto_err *err) CRYPTO_WUR;

/*
 * Make sure a sorted chain (crypto_chain_sort) can be served: more than one
 * certificate, or a lone self-signed one, is complete as it is. A lone leaf
 * is complete when its issuer is one of known (verified by signature; a
 * known intermediate is then appended to sorted, a known root is not) or is
 * in the system trust store. Otherwise -EINVAL "chain: missing the
 * certificate that issued 'CN=x' (issuer 'CN=y'): ...". known may be NULL.
 */
int crypto_chain_complete(struct crypto_chain *sorted, const struct crypto_chain *known,
			  struct crypto_err *err) CRYPTO_WUR;

/*
 * What a TLS client requires of a sorted chain (leaf first), -EINVAL with:
 *   "certificate is a CA certificate (CA:TRUE), which TLS clients refuse
 *    as a server certificate",
 *   "certificate's extended key usage does not include serverAuth (TLS
 *    server)" (only when the leaf has an EKU),
 *   "certificate 'CN=x' has an unknown critical extension 1.2.3.4",
 *   "certificate 'CN=x' is signed with SHA1, which TLS clients refuse"
 *    (any digest under 112 bits of security, on every certificate given).
 */
int crypto_chain_check_tls(const struct crypto_chain *ch, struct crypto_err *err) CRYPTO_WUR;

/* The first certificate of data (as crypto_chain_parse reads it). */
int crypto_cert_parse(const void *data, size_t len, struct crypto_cert **out,
		      struct crypto_err *err) CRYPTO_WUR;
int crypto_cert_to_pem(const struct crypto_cert *c, struct util_buf *out) CRYPTO_WUR;
/* Append the DER encoding (for ACME revocation). */
int crypto_cert_to_der(const struct crypto_cert *c, struct util_buf *out) CRYPTO_WUR;
struct crypto_cert *crypto_cert_up_ref(struct crypto_cert *c);
void crypto_cert_free(struct crypto_cert *c);
/* Public key of the certificate (public-only key object). */
int crypto_cert_get1_key(const struct crypto_cert *c, struct crypto_key **out) CRYPTO_WUR;
/* The key (private or public) belongs to the certificate. */
bool crypto_cert_matches_key(const struct crypto_cert *c, const struct crypto_key *k);
bool crypto_cert_is_self_signed(const struct crypto_cert *c);
/* issuer signed subject (signature verified with issuer's key). */
bool crypto_cert_issued_by(const struct crypto_cert *subject, const struct crypto_cert *issuer);
time_t crypto_cert_not_before(const struct crypto_cert *c);
time_t crypto_cert_not_after(const struct crypto_cert *c);
/*
 * Validity at now with skew seconds of allowance on both ends. -EINVAL with
 * "certificate has expired on 2025-01-03" or
 * "certificate is not valid before 2030-01-01".
 */
int crypto_cert_check_validity(const struct crypto_cert *c, time_t now, int skew,
			       struct crypto_err *err) CRYPTO_WUR;
/* Whole days from now to notAfter, rounded down (negative once expired). */
long crypto_cert_days_left(const struct crypto_cert *c, time_t now);
/* Does the certificate cover DNS name (SANs; wildcards as RFC 6125)? */
bool crypto_cert_covers(const struct crypto_cert *c, const char *name);
/* -EINVAL "certificate does not cover www.example.com" when it does not. */
int crypto_cert_check_covers(const struct crypto_cert *c, const char *name,
			     struct crypto_err *err) CRYPTO_WUR;
/* The key policy above applied to the certificate's public key. */
int crypto_cert_check_key_policy(const struct crypto_cert *c, struct crypto_err *err) CRYPTO_WUR;

/* What status shows about a certificate. */
struct crypto_cert_info {
	char subject[256];
	char issuer[256];
	char serial[100];              /* hex, lower case, no separators */
	char fingerprint_sha256[100];  /* hex, lower case, no separators */
	char key_type[16];             /* crypto_key_type_name() */
	time_t not_before, not_after;
	size_t nsans;
	char **sans; /* DNS SANs, owned; freed by crypto_cert_info_clear */
};
int crypto_cert_info(const struct crypto_cert *c, struct crypto_cert_info *out) CRYPTO_WUR;
void crypto_cert_info_clear(struct crypto_cert_info *info);

/* ---- names ------------------------------------------------------------- */

/*
 * Validate and canonicalise a domain name as used for a directory: lower
 * case LDH labels (IDNA A-labels "xn--" allowed and checked to decode),
 * optional leading "*." wildcard, no empty labels, no trailing dot, labels
 * <= 63, total <= 253, no '/', control or non-ASCII bytes, at least two
 * labels. Upper case is folded into out (size >= 254; -ENOSPC if smaller).
 * -EINVAL with a sentence such as "domain name 'a..b' has an empty label".
 * Also refused: '_' and other non-LDH characters, a wildcard with fewer than
 * two labels after it ("*.com"), an all-digit last label ("1.2.3.4").
 * Single-label names ("localhost") are refused on purpose: no public CA
 * issues them and a stray directory name should not become a request.
 */
int crypto_name_validate(const char *in, char *out, size_t outlen,
			 struct crypto_err *err) CRYPTO_WUR;
/*
 * For development (the local and self-signed issuers): everything
 * crypto_name_validate takes, plus single-label names ("localhost",
 * "*.localhost", "intranet") and IPv4/IPv6 addresses, which come out in
 * their canonical text ("::1", "fd00::1", "127.0.0.1").
 */
int crypto_name_validate_dev(const char *in, char *out, size_t outlen,
			     struct crypto_err *err) CRYPTO_WUR;
/* Is name an IPv4 or IPv6 address (an iPAddress SAN, not a DNS one)? */
bool crypto_name_is_ip(const char *name);
/* name matches pattern: exact or single-label wildcard, case-insensitive
 * (RFC 6125: "*" only as the whole first label; "*.com" matches nothing). */
bool crypto_name_matches(const char *pattern, const char *name);

/* ---- CSR --------------------------------------------------------------- */

/* PEM or DER; the signature is verified. -EINVAL "CSR signature is not valid". */
int crypto_csr_parse(const void *data, size_t len, struct crypto_csr **out,
		     struct crypto_err *err) CRYPTO_WUR;
/*
 * Names: DNS SANs plus the CN when not already listed, each through
 * crypto_name_validate and canonical (lower case). -EINVAL with a sentence
 * for any name that fails it ("CSR name: domain name 'a..b' has an empty
 * label"), for an IP address or other non-DNS SAN ("CSR asks for IP address
 * 192.0.2.1: certfs orders certificates for DNS names only"), for more than
 * CRYPTO_NAMES_MAX names, and "CSR names no DNS name". With dev (an issuer
 * of development certificates) names go through crypto_name_validate_dev
 * instead and iPAddress SANs are listed in their canonical text ("::1");
 * email, URI and other SANs are refused all the same.
 */
int crypto_csr_names(const struct crypto_csr *csr, bool dev, char ***names, size_t *n,
		     struct crypto_err *err) CRYPTO_WUR;
int crypto_csr_get1_key(const struct crypto_csr *csr, struct crypto_key **out) CRYPTO_WUR;
/* Build a CSR (CN = names[0], SANs = names) signed by key (private). Every
 * name must pass crypto_name_validate, n >= 1; -EINVAL otherwise. The CN is
 * left out when names[0] is longer than 64 bytes (X.520 upper bound). */
int crypto_csr_new(const struct crypto_key *key, const char *const *names, size_t n,
		   struct crypto_csr **out) CRYPTO_WUR;
int crypto_csr_to_der(const struct crypto_csr *csr, struct util_buf *out) CRYPTO_WUR;
int crypto_csr_to_pem(const struct crypto_csr *csr, struct util_buf *out) CRYPTO_WUR;
void crypto_csr_free(struct crypto_csr *csr);
/* Free an array of strings from crypto_csr_names (or any strv). */
void crypto_strv_free(char **v, size_t n);

/* ---- issuing ----------------------------------------------------------- */

/*
 * Self-signed leaf for names (CN = names[0]), valid now-60s .. now+days.
 * Here and below: names must pass crypto_name_validate, n >= 1, days > 0,
 * signing keys private; -EINVAL otherwise.
 */
int crypto_selfsigned_new(const struct crypto_key *key, const char *const *names,
			  size_t n, int days, time_t now, struct crypto_cert **out) CRYPTO_WUR;
/*
 * The RFC 8737 tls-alpn-01 challenge certificate: self-signed for key,
 * SAN = name only, with the critical acmeIdentifier extension holding the
 * SHA-256 of keyauth; valid now-60s .. now+7 days.
 */
int crypto_alpn_cert_new(const struct crypto_key *key, const char *name, const char *keyauth,
			 time_t now, struct crypto_cert **out) CRYPTO_WUR;
/* Local CA root: CA:TRUE critical, keyCertSign|cRLSign, SKI; CN given. */
int crypto_ca_root_new(const struct crypto_key *key, const char *cn, int days,
		       time_t now, struct crypto_cert **out) CRYPTO_WUR;
/*
 * Leaf signed by the CA for subject_key's public half (private or public-only
 * key, e.g. from a CSR): SANs = names, CN = names[0], random 128-bit serial,
 * digitalSignature (+keyEncipherment for RSA), EKU serverAuth, AKI/SKI,
 * CA:FALSE. notAfter never past the CA's own notAfter.
 */
int crypto_ca_issue(const struct crypto_key *ca_key, const struct crypto_cert *ca_cert,
		    const struct crypto_key *subject_key, const char *const *names,
		    size_t n, int days, time_t now, struct crypto_cert **out) CRYPTO_WUR;

/*
 * Intermediate CA signed by the root: CA:TRUE pathlen:0 critical,
 * keyCertSign|cRLSign, SKI/AKI, notAfter never past the root's.
 */
int crypto_ca_intermediate_new(const struct crypto_key *root_key,
			       const struct crypto_cert *root_cert,
			       const struct crypto_key *key, const char *cn, int days,
			       time_t now, struct crypto_cert **out) CRYPTO_WUR;

/* ---- PKCS#12 ----------------------------------------------------------- */

enum crypto_p12_algo {
	CRYPTO_P12_AES256, /* PBES2/PBKDF2-SHA256/AES-256-CBC, MAC SHA-256 (default) */
	CRYPTO_P12_LEGACY, /* PBE-SHA1-3DES, MAC SHA-1: old Java and Windows */
};
/* key + chain (leaf first) into a PKCS#12; pass "" is an empty password.
 * -EINVAL if key is public-only, chain is empty or chain[0] is not key's. */
int crypto_p12_build(const struct crypto_key *key, const struct crypto_chain *chain,
		     const char *pass, enum crypto_p12_algo algo, struct util_buf *out) CRYPTO_WUR;
/*
 * Open a PKCS#12 with pass (NULL = empty). -EINVAL with
 * "PFX password is wrong", "PFX holds no private key",
 * "PFX holds more than one private key", "PFX is not valid PKCS#12".
 * RC2-40 (openssl -legacy) files are read with the legacy provider, loaded
 * on first need ("PFX uses RC2 encryption, which this system cannot read"
 * if it cannot be). The chain holds the key's own certificate first, the
 * others in file order; it may be empty.
 */
int crypto_p12_parse(const void *der, size_t len, const char *pass,
		     struct crypto_key **key, struct crypto_chain **chain,
		     struct crypto_err *err) CRYPTO_WUR;

/* ---- ACME signing (RFC 7515, 7517, 7638) --------------------------------- */

/* base64url without padding of data, appended to out. */
int crypto_b64url(const void *data, size_t len, struct util_buf *out) CRYPTO_WUR;
/* Decode base64url (padding optional) into out; -EINVAL for any character
 * outside the URL alphabet (including '+', '/', whitespace). */
int crypto_b64url_decode(const char *s, size_t len, struct util_buf *out) CRYPTO_WUR;
/* "ES256" for P-256 keys, "ES384" for P-384, "RS256" for RSA; NULL for others. */
const char *crypto_jws_alg(const struct crypto_key *k);
/* The public JWK as compact JSON with members in RFC 7638 order. */
int crypto_jwk_json(const struct crypto_key *k, struct util_buf *out) CRYPTO_WUR;
/* RFC 7638 SHA-256 thumbprint, base64url (43 chars + NUL into out[64]). */
int crypto_jwk_thumbprint(const struct crypto_key *k, char out[64]) CRYPTO_WUR;
/*
 * JWS signature over signing_input ("b64(protected).b64(payload)"): ES256
 * as the raw 64-byte r||s (RFC 7518 3.4), ES384 96 bytes, RS256 PKCS#1 v1.5.
 * Appends the base64url signature to out. -EINVAL for a public-only key or
 * one without a JWS algorithm.
 */
int crypto_jws_sign(const struct crypto_key *k, const void *signing_input, size_t len,
		    struct util_buf *out) CRYPTO_WUR;
/* HMAC-SHA256 for External Account Binding; base64url result appended. */
int crypto_hmac_sha256_b64url(const void *key, size_t keylen, const void *data,
			      size_t len, struct util_buf *out) CRYPTO_WUR;
/* SHA-256 of data, base64url (for dns-01 TXT values). */
int crypto_sha256_b64url(const void *data, size_t len, struct util_buf *out) CRYPTO_WUR;
/* RFC 9773 ARI certificate identifier: b64url(AKI keyIdentifier) "." b64url(serial DER).
 * -ENOENT when the certificate has no AKI keyIdentifier. */
int crypto_cert_ari_id(const struct crypto_cert *c, struct util_buf *out) CRYPTO_WUR;
/* Compare secrets of n bytes in constant time (CRYPTO_memcmp). */
bool crypto_secret_equal(const void *a, const void *b, size_t n);
/* Fill buf with cryptographically random bytes. */
int crypto_random(void *buf, size_t len) CRYPTO_WUR;

/* ---- a TLS server for tls-alpn-01 (RFC 8737) ----------------------------- */

struct crypto_tls_alpn;

/*
 * The certificate for the SNI name (new references the server drops), or
 * -ENOENT when none is published: the handshake is then refused.
 */
typedef int (*crypto_tls_alpn_lookup)(void *arg, const char *sni, struct crypto_key **key,
				      struct crypto_cert **cert);

/*
 * A TLS server that completes handshakes only for ALPN "acme-tls/1" with an
 * SNI name lookup knows (TLS 1.2 or later), and never sends application
 * data (RFC 8737 4).
 */
int crypto_tls_alpn_new(crypto_tls_alpn_lookup lookup, void *arg,
			struct crypto_tls_alpn **out) CRYPTO_WUR;
/*
 * One handshake on the connected socket fd (blocking; the caller bounds it
 * with socket timeouts), then close_notify. The caller closes fd. 0 when a
 * validation handshake completed, -EPROTO otherwise.
 */
int crypto_tls_alpn_serve(struct crypto_tls_alpn *t, int fd) CRYPTO_WUR;
void crypto_tls_alpn_free(struct crypto_tls_alpn *t);

/* ---- base64 and sealed values (the etcd store) ---------------------------- */

/* Standard base64 with padding (RFC 4648 4), appended to out. */
int crypto_b64(const void *data, size_t len, struct util_buf *out) CRYPTO_WUR;
/* Decode standard base64 (padding optional) into out; -EINVAL for any
 * character outside the alphabet (including whitespace). */
int crypto_b64_decode(const char *s, size_t len, struct util_buf *out) CRYPTO_WUR;

#define CRYPTO_SEAL_KEY_LEN 32
/* Bytes a sealed value has besides the plaintext (magic, nonce, tag). */
#define CRYPTO_SEAL_OVERHEAD (4 + 12 + 16)
/*
 * AES-256-GCM: append "cfs1" || random 96-bit nonce || ciphertext || tag to
 * out. aad (the value's name) is authenticated, so a sealed value cannot be
 * moved to another name unnoticed. out should be a secret buffer when the
 * caller cares about the plaintext lingering in no other place.
 */
int crypto_seal(const unsigned char key[CRYPTO_SEAL_KEY_LEN], const void *aad, size_t aadlen,
		const void *in, size_t len, struct util_buf *out) CRYPTO_WUR;
/*
 * Reverse of crypto_seal: the plaintext appended to out (make it secret).
 * -EINVAL when in is not a sealed value or fails authentication (wrong key,
 * wrong aad, altered bytes); nothing is appended then.
 */
int crypto_unseal(const unsigned char key[CRYPTO_SEAL_KEY_LEN], const void *aad,
		  size_t aadlen, const void *in, size_t len, struct util_buf *out) CRYPTO_WUR;
/* Does in start like a sealed value? */
bool crypto_is_sealed(const void *in, size_t len);

/* ---- a TLS client that asks a server what it serves ---------------------- */

/* Asked while a probe waits: true gives up at once (shutdown). */
typedef bool (*crypto_tls_probe_stop)(void *arg);

/*
 * One handshake with SNI sni on the connected non-blocking socket fd,
 * within timeout_ms, unverified: the certificate the server presents goes
 * to *leaf (owned by the caller). stop (may be NULL) is asked every 100 ms.
 * 0, or -EPROTO (no handshake, err says why) / -ETIMEDOUT / -ECANCELED /
 * -ENOMEM. The caller closes fd.
 */
int crypto_tls_probe(int fd, const char *sni, int timeout_ms, crypto_tls_probe_stop stop,
		     void *arg, struct crypto_cert **leaf, struct crypto_err *err) CRYPTO_WUR;

#endif
