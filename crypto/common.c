/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the crypto module: the error sentence, draining the
 * OpenSSL error queue into a short reason, a PEM block scanner (so one bad
 * block next to a key or certificate can be told apart from the rest, which
 * OpenSSL's own PEM reader cannot), copying memory BIOs into capped buffers,
 * and the small building blocks of certificates and requests.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "crypto/crypto_int.h"

/*
 * Every block OpenSSL frees is wiped first: decoding, encoding and signing
 * leave private key bytes in temporaries (DER, base64, scalars) that
 * OpenSSL frees without clearing, where a later core dump would find them.
 * Installed before main(), because OpenSSL refuses new functions once it
 * has allocated anything (libcurl initialises it early).
 */
static void *ossl_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return malloc(n);
}

static void ossl_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (!p)
		return;
	util_wipe(p, malloc_usable_size(p));
	free(p);
}

/* By hand, like the secret buffers: realloc() may leave the old block unwiped. */
static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
	size_t old;
	void *q;

	if (!p)
		return malloc(n);
	if (!n) {
		ossl_free(p, file, line);
		return NULL;
	}
	old = malloc_usable_size(p);
	q = malloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, old < n ? old : n);
	ossl_free(p, file, line);
	return q;
}

__attribute__((constructor)) static void crypto_mem_init(void)
{
	CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free);
}

static pthread_once_t secure_once = PTHREAD_ONCE_INIT;

static void secure_heap_init(void)
{
	/*
	 * OpenSSL keeps the private parts of keys (BN_secure_new) and its
	 * secure-memory BIOs here: a locked mapping left out of core dumps
	 * (MADV_DONTDUMP). Keys are parsed for a moment and freed, so 4 MiB
	 * holds hundreds at once. Without it (mlock refused, no memory) they
	 * live on the ordinary heap, wiped on free as before.
	 */
	if (!CRYPTO_secure_malloc_initialized())
		(void)!CRYPTO_secure_malloc_init(CRYPTO_SECURE_HEAP, 32);
	ERR_clear_error();
}

void crypto_secure_heap(void)
{
	pthread_once(&secure_once, secure_heap_init);
}

void crypto_err_set(struct crypto_err *err, const char *fmt, ...)
{
	va_list ap;

	ERR_clear_error();
	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

const char *crypto_ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, len, "%s", r ? r : "unknown error");
	ERR_clear_error();
	return buf;
}

void crypto_name_short(const X509_NAME *name, char *out, size_t len)
{
	/* RFC 2253 escaping but UTF-8 kept readable, "CN=x, O=y" separators. */
	unsigned long flags = XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN |
			      (ASN1_STRFLGS_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	BIO *bio = NULL;
	char *p;
	long n;

	if (!len)
		return;
	out[0] = '\0';
	if (!name || X509_NAME_entry_count(name) == 0) {
		snprintf(out, len, "(empty)");
		return;
	}
	bio = BIO_new(BIO_s_mem());
	if (!bio || X509_NAME_print_ex(bio, name, 0, flags) < 0) {
		snprintf(out, len, "(unreadable)");
		goto out;
	}
	n = BIO_get_mem_data(bio, &p);
	if (n < 0)
		n = 0;
	if ((size_t)n >= len && len > 4)
		snprintf(out, len, "%.*s...", (int)(len - 4), p);
	else
		snprintf(out, len, "%.*s", (int)n, p);
out:
	BIO_free(bio);
	ERR_clear_error();
}

const EVP_MD *crypto_sign_md(const EVP_PKEY *pkey)
{
	char group[64];

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_ED25519:
	case EVP_PKEY_ED448:
		/* EdDSA hashes internally; OpenSSL requires a NULL digest. */
		return NULL;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) &&
		    strcmp(group, "secp384r1") == 0)
			return EVP_sha384();
		return EVP_sha256();
	default:
		return EVP_sha256();
	}
}

int crypto_bio_to_buf(BIO *bio, struct util_buf *out)
{
	char *p;
	long n = BIO_get_mem_data(bio, &p);

	if (n < 0)
		return -EINVAL;
	return util_buf_append(out, p, (size_t)n);
}

int crypto_der_to_buf(unsigned char *der, int len, struct util_buf *out)
{
	int rc;

	if (len <= 0) {
		ERR_clear_error();
		return -ENOMEM;
	}
	rc = util_buf_append(out, der, (size_t)len);
	OPENSSL_free(der);
	return rc;
}

static const char *mem_find(const char *hay, size_t haylen, const char *needle)
{
	return memmem(hay, haylen, needle, strlen(needle));
}

bool crypto_pem_next(const void *data, size_t len, size_t *pos, struct crypto_pem_block *blk)
{
	const char *base = data, *p, *lab, *q, *end, *e;
	size_t off = *pos;

	while (off < len) {
		p = mem_find(base + off, len - off, "-----BEGIN ");
		if (!p)
			break;
		lab = p + strlen("-----BEGIN ");
		/* The label runs to the closing dashes on the same line. */
		for (q = lab; q < base + len && *q != '-' && *q != '\n'; q++)
			;
		if ((size_t)(base + len - q) < 5 || memcmp(q, "-----", 5) != 0) {
			off = (size_t)(lab - base);
			continue;
		}
		blk->label = lab;
		blk->label_len = (size_t)(q - lab);
		blk->start = p;
		blk->complete = false;
		end = base + len;
		/* Find "-----END <label>-----" after the BEGIN line. */
		for (e = q + 5; e < end;) {
			const char *m = mem_find(e, (size_t)(end - e), "-----END ");

			if (!m)
				break;
			m += strlen("-----END ");
			if ((size_t)(end - m) >= blk->label_len + 5 &&
			    memcmp(m, lab, blk->label_len) == 0 &&
			    memcmp(m + blk->label_len, "-----", 5) == 0) {
				end = m + blk->label_len + 5;
				blk->complete = true;
				break;
			}
			e = m;
		}
		blk->len = (size_t)(end - p);
		*pos = (size_t)(end - base);
		return true;
	}
	*pos = len;
	return false;
}

bool crypto_pem_label_is(const struct crypto_pem_block *blk, const char *label)
{
	return blk->label_len == strlen(label) && memcmp(blk->label, label, blk->label_len) == 0;
}

int crypto_pem_block_decode(const struct crypto_pem_block *blk, unsigned char **der,
			    long *derlen)
{
	char *copy = NULL, *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	size_t i, n = 0;
	BIO *bio = NULL;
	long dlen = 0;
	int rc;

	*der = NULL;
	*derlen = 0;
	if (!blk->complete)
		return -EINVAL;
	/*
	 * A private copy without CRs and with a final newline: the block may
	 * hold a key, so the copy is wiped whatever happens.
	 */
	copy = OPENSSL_malloc(blk->len + 2);
	if (!copy)
		return -ENOMEM;
	for (i = 0; i < blk->len; i++)
		if (blk->start[i] != '\r')
			copy[n++] = blk->start[i];
	copy[n++] = '\n';
	bio = BIO_new_mem_buf(copy, (int)n);
	if (!bio) {
		rc = -ENOMEM;
		goto out;
	}
	if (!PEM_read_bio(bio, &name, &header, &data, &dlen) || dlen <= 0) {
		rc = -EINVAL;
		goto out;
	}
	*der = data;
	*derlen = dlen;
	data = NULL;
	rc = 0;
out:
	ERR_clear_error();
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_clear_free(data, dlen > 0 ? (size_t)dlen : 0);
	BIO_free(bio);
	OPENSSL_clear_free(copy, blk->len + 2);
	return rc;
}

time_t crypto_asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return (time_t)-1;
	return timegm(&tm);
}

int crypto_strv_push(char ***v, size_t *n, const char *s, size_t len)
{
	char **nv, *copy;

	copy = strndup(s, len);
	if (!copy)
		return -ENOMEM;
	nv = realloc(*v, (*n + 1) * sizeof(*nv));
	if (!nv) {
		free(copy);
		return -ENOMEM;
	}
	nv[(*n)++] = copy;
	*v = nv;
	return 0;
}

void crypto_strv_free(char **v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static bool dns_bytes_ok(const unsigned char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return false;
	return true;
}

int crypto_gens_dns(const GENERAL_NAMES *gens, char ***v, size_t *n)
{
	const GENERAL_NAME *g;
	const unsigned char *s;
	int i, len, rc;

	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_DNS)
			continue;
		s = ASN1_STRING_get0_data(g->d.dNSName);
		len = ASN1_STRING_length(g->d.dNSName);
		/*
		 * An embedded NUL would make the C string say something else;
		 * a control byte or space is no host name, and a newline would
		 * start a line of its own wherever the name is shown.
		 */
		if (len <= 0 || !dns_bytes_ok(s, (size_t)len))
			continue;
		rc = crypto_strv_push(v, n, (const char *)s, (size_t)len);
		if (rc)
			return rc;
	}
	return 0;
}

int crypto_set_random_serial(X509 *x)
{
	unsigned char raw[16];
	ASN1_INTEGER *ai = NULL;
	BIGNUM *bn = NULL;
	int rc = -ENOMEM;

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		rc = -EIO;
		goto out;
	}
	/* Positive and non-zero: clear the sign bit, set the next one. */
	raw[0] = (unsigned char)((raw[0] & 0x7f) | 0x40);
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (!bn)
		goto out;
	ai = BN_to_ASN1_INTEGER(bn, NULL);
	if (!ai || !X509_set_serialNumber(x, ai))
		goto out;
	rc = 0;
out:
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return rc;
}

int crypto_name_cn(X509_NAME *name, const char *cn)
{
	if (strlen(cn) > 64)
		return 0;
	if (!X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0))
		return -ENOMEM;
	return 0;
}

GENERAL_NAMES *crypto_gens_from_names(const char *const *names, size_t n)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	GENERAL_NAME *g = NULL;
	ASN1_IA5STRING *s = NULL;
	size_t i;

	if (!gens)
		return NULL;
	for (i = 0; i < n; i++) {
		g = GENERAL_NAME_new();
		if (!g)
			goto fail;
		if (crypto_name_is_ip(names[i])) {
			/* RFC 5280 4.2.1.6: an address is an iPAddress, never a dNSName. */
			s = a2i_IPADDRESS(names[i]);
			if (!s)
				goto fail;
			GENERAL_NAME_set0_value(g, GEN_IPADD, s);
		} else {
			s = ASN1_IA5STRING_new();
			if (!s || !ASN1_STRING_set(s, names[i], -1))
				goto fail;
			GENERAL_NAME_set0_value(g, GEN_DNS, s);
		}
		s = NULL;
		if (!sk_GENERAL_NAME_push(gens, g))
			goto fail;
		g = NULL;
	}
	return gens;
fail:
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(g);
	GENERAL_NAMES_free(gens);
	return NULL;
}

int crypto_x509_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
	int ok;

	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

int crypto_names_check(const char *const *names, size_t n)
{
	char canon[256];
	size_t i;

	if (!names || n == 0)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (!names[i] || crypto_name_validate_dev(names[i], canon, sizeof(canon), NULL))
			return -EINVAL;
	return 0;
}

int crypto_random(void *buf, size_t len)
{
	unsigned char *p = buf;
	size_t chunk;

	while (len) {
		chunk = len > 65536 ? 65536 : len;
		if (RAND_bytes(p, (int)chunk) != 1) {
			ERR_clear_error();
			return -EIO;
		}
		p += chunk;
		len -= chunk;
	}
	return 0;
}

bool crypto_secret_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}
