/* SPDX-License-Identifier: MIT */
/*
 * Is an uploaded chain complete enough to serve? A leaf uploaded without
 * the certificate of its issuer is the most common hand-installed TLS
 * mistake: browsers that fetch missing intermediates hide it, while curl,
 * Java, Android and mail servers fail with "unable to get local issuer
 * certificate". A lone leaf is therefore accepted only when its issuer is a
 * certificate certfs already knows (the local CA) or a root of the system
 * trust store (OpenSSL's default paths: /etc/ssl/certs, or SSL_CERT_FILE and
 * SSL_CERT_DIR when set), which every client brings along.
 */
#include <errno.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "crypto/crypto_int.h"

/* Is leaf's issuer in the system trust store (signature checked)? */
static bool system_trusts_issuer(X509 *leaf)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509 *issuer = NULL;
	bool ok = false;

	/* Made per call: uploads of a lone leaf are rare, and a trust store
	 * updated by update-ca-certificates is then seen at once. */
	if (st && ctx && X509_STORE_set_default_paths(st) == 1 &&
	    X509_STORE_CTX_init(ctx, st, leaf, NULL) == 1 &&
	    X509_STORE_CTX_get1_issuer(&issuer, ctx, leaf) == 1 && issuer) {
		EVP_PKEY *pub = X509_get0_pubkey(issuer);

		ok = pub && X509_verify(leaf, pub) == 1;
	}
	X509_free(issuer);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	ERR_clear_error();
	return ok;
}

int crypto_chain_complete(struct crypto_chain *sorted, const struct crypto_chain *known,
			  struct crypto_err *err)
{
	struct crypto_cert *leaf = crypto_chain_get0(sorted, 0);
	char subject[160], issuer[160];

	if (!leaf)
		return -EINVAL;
	/* Leaf plus intermediates: servers never send the root, so a chain
	 * that stops below it is complete. A lone self-signed certificate is
	 * its own chain. */
	if (crypto_chain_count(sorted) > 1 || crypto_cert_is_self_signed(leaf))
		return 0;
	for (size_t i = 0; i < crypto_chain_count(known); i++) {
		struct crypto_cert *c = crypto_chain_get0(known, i);

		if (!crypto_cert_issued_by(leaf, c))
			continue;
		/* A known intermediate is served after the leaf; a known root
		 * is not served at all, as with any chain. */
		return crypto_cert_is_self_signed(c) ? 0 : crypto_chain_push(sorted, c);
	}
	if (system_trusts_issuer(leaf->x509))
		return 0;
	crypto_name_short(X509_get_subject_name(leaf->x509), subject, sizeof(subject));
	crypto_name_short(X509_get_issuer_name(leaf->x509), issuer, sizeof(issuer));
	crypto_err_set(err, "chain: missing the certificate that issued '%s' (issuer '%s'): "
			    "append the intermediate certificate after the leaf, or write it "
			    "to chain.pem",
		       subject, issuer);
	return -EINVAL;
}
