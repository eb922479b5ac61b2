/* SPDX-License-Identifier: MIT */
/*
 * Certificate chains: parsing everything a user may paste (PEM bundles with
 * keys in between, CRLF, a BOM, or one DER certificate) and putting a chain
 * given in any order into leaf-first order. Links are proven by signature
 * (X509_verify with the issuer's key), never by matching names alone, so a
 * look-alike intermediate is caught here rather than by a client later.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "crypto/crypto_int.h"

struct crypto_chain *crypto_chain_new(void)
{
	return calloc(1, sizeof(struct crypto_chain));
}

int crypto_chain_push(struct crypto_chain *ch, struct crypto_cert *c)
{
	struct crypto_cert **v;
	size_t cap;

	if (!c)
		return -EINVAL;
	if (ch->n == ch->cap) {
		cap = ch->cap ? ch->cap * 2 : 4;
		v = realloc(ch->certs, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ch->certs = v;
		ch->cap = cap;
	}
	ch->certs[ch->n++] = crypto_cert_up_ref(c);
	return 0;
}

size_t crypto_chain_count(const struct crypto_chain *ch)
{
	return ch ? ch->n : 0;
}

struct crypto_cert *crypto_chain_get0(const struct crypto_chain *ch, size_t i)
{
	return ch && i < ch->n ? ch->certs[i] : NULL;
}

void crypto_chain_free(struct crypto_chain *ch)
{
	size_t i;

	if (!ch)
		return;
	for (i = 0; i < ch->n; i++)
		crypto_cert_free(ch->certs[i]);
	free(ch->certs);
	free(ch);
}

int crypto_chain_to_pem(const struct crypto_chain *ch, struct util_buf *out)
{
	size_t i;
	int rc;

	for (i = 0; i < ch->n; i++) {
		rc = crypto_cert_to_pem(ch->certs[i], out);
		if (rc)
			return rc;
	}
	return 0;
}

/* Push a new certificate read from DER (owned by the chain afterwards). */
static int chain_push_der(struct crypto_chain *ch, const unsigned char *der, long len,
			  size_t idx, bool pem, struct crypto_err *err)
{
	const unsigned char *p = der;
	struct crypto_cert *c = NULL;
	X509 *x;
	char why[128];
	int rc;

	x = d2i_X509(NULL, &p, len);
	if (!x) {
		crypto_err_set(err, "certificate %zu is not valid: %s", idx,
			       crypto_ssl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	if (p != der + len) {
		X509_free(x);
		if (pem)
			crypto_err_set(err, "certificate %zu is not valid: trailing data", idx);
		else
			crypto_err_set(err, "trailing data after DER certificate");
		return -EINVAL;
	}
	c = crypto_cert_wrap(x);
	if (!c) {
		X509_free(x);
		return -ENOMEM;
	}
	rc = crypto_chain_push(ch, c);
	crypto_cert_free(c);
	return rc;
}

int crypto_chain_parse(const void *data, size_t len, struct crypto_chain **out,
		       struct crypto_err *err)
{
	const unsigned char *d = data;
	struct crypto_chain *ch = NULL;
	struct crypto_pem_block blk;
	unsigned char *der = NULL;
	size_t pos = 0, idx = 0;
	bool any_pem = false;
	long derlen = 0;
	int rc;

	*out = NULL;
	if (len >= 3 && d[0] == 0xef && d[1] == 0xbb && d[2] == 0xbf) {
		d += 3;
		len -= 3;
	}
	ch = crypto_chain_new();
	if (!ch)
		return -ENOMEM;
	while (crypto_pem_next(d, len, &pos, &blk)) {
		any_pem = true;
		if (!crypto_pem_label_is(&blk, "CERTIFICATE") &&
		    !crypto_pem_label_is(&blk, "X509 CERTIFICATE"))
			continue;
		if (++idx > CRYPTO_CHAIN_MAX) {
			crypto_err_set(err, "more than %d certificates (the limit for one upload)",
				       CRYPTO_CHAIN_MAX);
			rc = -EINVAL;
			goto out;
		}
		rc = crypto_pem_block_decode(&blk, &der, &derlen);
		if (rc == -EINVAL)
			crypto_err_set(err, "certificate %zu is not valid: %s", idx,
				       blk.complete ? "bad base64" : "no END line");
		if (rc)
			goto out;
		rc = chain_push_der(ch, der, derlen, idx, true, err);
		OPENSSL_free(der);
		der = NULL;
		if (rc)
			goto out;
	}
	/* No PEM framing at all: one DER certificate (a SEQUENCE) or nothing. */
	if (!any_pem && len > 0 && d[0] == 0x30) {
		if (len > 100 * 1024 * 1024) {
			crypto_err_set(err, "certificate 1 is not valid: too large");
			rc = -EINVAL;
			goto out;
		}
		rc = chain_push_der(ch, d, (long)len, 1, false, err);
		if (rc)
			goto out;
	}
	if (ch->n == 0) {
		crypto_err_set(err, "no certificate found");
		rc = -EINVAL;
		goto out;
	}
	*out = ch;
	ch = NULL;
	rc = 0;
out:
	crypto_chain_free(ch);
	return rc;
}

static bool cert_is_ca(const struct crypto_cert *c)
{
	/* X509_check_ca: 1 for CA:TRUE (and v1 roots, which the user may still paste). */
	int r = X509_check_ca(c->x509);

	ERR_clear_error();
	return r != 0;
}

static void subject_of(const struct crypto_cert *c, char *buf, size_t len)
{
	crypto_name_short(X509_get_subject_name(c->x509), buf, len);
}

static void issuer_of(const struct crypto_cert *c, char *buf, size_t len)
{
	crypto_name_short(X509_get_issuer_name(c->x509), buf, len);
}

/* Names and signature-check budget of one sort. */
struct sort_ctx {
	struct crypto_cert **u; /* unique certificates, borrowed */
	unsigned long *subj, *iss; /* name hashes: most pairs are told apart without a signature */
	unsigned verifies;
};

/*
 * Did u[j] sign u[i]? Names first (hash, then the full comparison), and
 * only then the signature, which is counted: a thousand certificates that
 * all share one name would otherwise cost a million signature checks.
 */
static int sort_link(struct sort_ctx *sc, size_t i, size_t j, bool *yes, struct crypto_err *err)
{
	EVP_PKEY *pub;

	*yes = false;
	if (sc->iss[i] != sc->subj[j] ||
	    X509_NAME_cmp(X509_get_issuer_name(sc->u[i]->x509),
			  X509_get_subject_name(sc->u[j]->x509)) != 0)
		return 0;
	if (++sc->verifies > CRYPTO_CHAIN_VERIFY_MAX) {
		crypto_err_set(err, "chain: ordering the certificates needs more than %d signature "
				    "checks (the limit)", CRYPTO_CHAIN_VERIFY_MAX);
		return -EINVAL;
	}
	pub = X509_get0_pubkey(sc->u[j]->x509);
	*yes = pub && X509_verify(sc->u[i]->x509, pub) == 1;
	ERR_clear_error();
	return 0;
}

int crypto_chain_sort(const struct crypto_chain *in, struct crypto_chain **out,
		      struct crypto_err *err)
{
	struct sort_ctx sc = { 0 };
	ssize_t *issuer = NULL, leaf, ee = -1, ca = -1, cur, end;
	bool *selfsig = NULL, *is_issuer = NULL, *used = NULL, yes;
	struct crypto_chain *ch = NULL;
	struct crypto_cert **u;
	size_t n = 0, i, j, nleaves = 0, npath = 0;
	char a[160], b[160];
	int rc;

	*out = NULL;
	if (!in || in->n == 0) {
		crypto_err_set(err, "chain: no certificate");
		return -EINVAL;
	}
	if (in->n > CRYPTO_CHAIN_MAX) {
		crypto_err_set(err, "chain: more than %d certificates (the limit for one upload)",
			       CRYPTO_CHAIN_MAX);
		return -EINVAL;
	}
	u = sc.u = calloc(in->n, sizeof(*sc.u));
	sc.subj = calloc(in->n, sizeof(*sc.subj));
	sc.iss = calloc(in->n, sizeof(*sc.iss));
	issuer = calloc(in->n, sizeof(*issuer));
	selfsig = calloc(in->n, sizeof(*selfsig));
	is_issuer = calloc(in->n, sizeof(*is_issuer));
	used = calloc(in->n, sizeof(*used));
	ch = crypto_chain_new();
	if (!u || !sc.subj || !sc.iss || !issuer || !selfsig || !is_issuer || !used || !ch) {
		rc = -ENOMEM;
		goto out;
	}
	/* The same certificate pasted twice is harmless: keep one. */
	for (i = 0; i < in->n; i++) {
		for (j = 0; j < n; j++)
			if (X509_cmp(in->certs[i]->x509, u[j]->x509) == 0)
				break;
		if (j == n)
			u[n++] = in->certs[i];
	}
	for (i = 0; i < n; i++) {
		sc.subj[i] = X509_subject_name_hash(u[i]->x509);
		sc.iss[i] = X509_issuer_name_hash(u[i]->x509);
	}
	ERR_clear_error();
	for (i = 0; i < n; i++) {
		rc = sort_link(&sc, i, i, &selfsig[i], err);
		if (rc)
			goto out;
		issuer[i] = -1;
		for (j = 0; j < n && !selfsig[i]; j++) {
			if (j == i)
				continue;
			rc = sort_link(&sc, i, j, &yes, err);
			if (rc)
				goto out;
			if (yes) {
				issuer[i] = (ssize_t)j;
				is_issuer[j] = true;
				break;
			}
		}
	}
	/*
	 * Leaf candidates issue nothing in the set; a self-signed root only
	 * counts when it is all there is. Several end-entity candidates are
	 * several leaves; otherwise the first end-entity (or first candidate)
	 * is the leaf and the rest must be reached from it.
	 */
	for (i = 0; i < n; i++) {
		if (is_issuer[i] || (selfsig[i] && n > 1))
			continue;
		if (!cert_is_ca(u[i])) {
			if (nleaves++ == 0)
				ee = (ssize_t)i;
		} else if (ca < 0) {
			ca = (ssize_t)i;
		}
	}
	leaf = ee >= 0 ? ee : ca;
	if (nleaves > 1) {
		crypto_err_set(err, "chain: more than one leaf certificate");
		rc = -EINVAL;
		goto out;
	}
	if (leaf < 0) {
		if (n == 1) {
			leaf = 0;
		} else {
			crypto_err_set(err, "chain: no leaf certificate");
			rc = -EINVAL;
			goto out;
		}
	}
	for (cur = leaf, end = leaf; cur >= 0 && !used[cur]; cur = issuer[cur]) {
		used[cur] = true;
		end = cur;
		npath++;
		rc = crypto_chain_push(ch, u[cur]);
		if (rc)
			goto out;
	}
	if (cur >= 0) {
		/*
		 * Certificates that sign each other (cross-signs pasted both
		 * ways) lead to no root: no client can build a path from them.
		 */
		subject_of(u[end], a, sizeof(a));
		subject_of(u[cur], b, sizeof(b));
		crypto_err_set(err, "chain: certificate '%s' is issued by '%s', which comes "
				    "earlier in the chain (a loop)", a, b);
		rc = -EINVAL;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (used[i])
			continue;
		subject_of(u[i], a, sizeof(a));
		if (X509_NAME_cmp(X509_get_issuer_name(u[end]->x509),
				  X509_get_subject_name(u[i]->x509)) == 0 && !selfsig[end]) {
			/* Right name, wrong signature: a look-alike or a re-keyed CA. */
			subject_of(u[end], b, sizeof(b));
			crypto_err_set(err, "chain: certificate '%s' is not issued by '%s'", b, a);
		} else if (!selfsig[end] && npath == 1 && cert_is_ca(u[i])) {
			/* A lone leaf with a CA that does not link to it: most
			 * likely the intermediate between them is missing. Once a
			 * leaf and an intermediate link up, an unrelated CA is far
			 * more likely pasted in by mistake (below). */
			subject_of(u[end], b, sizeof(b));
			issuer_of(u[end], a, sizeof(a));
			crypto_err_set(err, "chain: missing the certificate that issued '%s' "
					    "(issuer '%s')", b, a);
		} else {
			crypto_err_set(err, "chain: certificate '%s' does not belong to the chain",
				       a);
		}
		rc = -EINVAL;
		goto out;
	}
	/* Clients bring their own root: sending it only costs bytes. */
	if (npath > 1 && selfsig[end]) {
		crypto_cert_free(ch->certs[--ch->n]);
	}
	*out = ch;
	ch = NULL;
	rc = 0;
out:
	crypto_chain_free(ch);
	free(sc.u);
	free(sc.subj);
	free(sc.iss);
	free(issuer);
	free(selfsig);
	free(is_issuer);
	free(used);
	return rc;
}
