/* SPDX-License-Identifier: MIT */
/*
 * The TLS side of the tls-alpn-01 responder (RFC 8737): an OpenSSL server
 * context that accepts only the "acme-tls/1" protocol and picks, from the
 * SNI name, the challenge certificate the ACME client published for that
 * name. The sockets and the thread live in acme/ (tlsalpn01.c); this file
 * owns everything that needs OpenSSL.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "crypto/crypto_int.h"

#define ACME_TLS_1 "acme-tls/1"

struct crypto_tls_alpn {
	SSL_CTX *ctx;
	crypto_tls_alpn_lookup lookup;
	void *arg;
};

/* SNI: the challenge certificate for that name, or a fatal alert. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
	struct crypto_tls_alpn *t = arg;
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	struct crypto_key *key = NULL;
	struct crypto_cert *cert = NULL;
	int ok;

	if (!sni || t->lookup(t->arg, sni, &key, &cert)) {
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	ok = SSL_use_certificate(ssl, cert->x509) == 1 && SSL_use_PrivateKey(ssl, key->pkey) == 1;
	crypto_key_free(key);
	crypto_cert_free(cert);
	if (!ok) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

/* RFC 8737 4: the client offers exactly "acme-tls/1"; anything else fails. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
		if (i + 1u + in[i] > inlen)
			break;
		if (in[i] == strlen(ACME_TLS_1) && !memcmp(in + i + 1, ACME_TLS_1, in[i])) {
			*out = in + i + 1;
			*outlen = in[i];
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int crypto_tls_alpn_new(crypto_tls_alpn_lookup lookup, void *arg, struct crypto_tls_alpn **out)
{
	struct crypto_tls_alpn *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->lookup = lookup;
	t->arg = arg;
	t->ctx = SSL_CTX_new(TLS_server_method());
	if (!t->ctx || !SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION)) {
		crypto_tls_alpn_free(t);
		ERR_clear_error();
		return -ENOMEM;
	}
	SSL_CTX_set_tlsext_servername_callback(t->ctx, on_servername);
	SSL_CTX_set_tlsext_servername_arg(t->ctx, t);
	SSL_CTX_set_alpn_select_cb(t->ctx, on_alpn, t);
	*out = t;
	return 0;
}

int crypto_tls_alpn_serve(struct crypto_tls_alpn *t, int fd)
{
	const unsigned char *proto = NULL;
	unsigned int plen = 0;
	SSL *ssl = SSL_new(t->ctx);
	int rc = -EPROTO;

	if (!ssl || !SSL_set_fd(ssl, fd))
		goto out;
	if (SSL_accept(ssl) != 1)
		goto out;
	SSL_get0_alpn_selected(ssl, &proto, &plen);
	if (plen == strlen(ACME_TLS_1) && !memcmp(proto, ACME_TLS_1, plen))
		rc = 0;
	(void)SSL_shutdown(ssl);
out:
	SSL_free(ssl);
	ERR_clear_error();
	return rc;
}

void crypto_tls_alpn_free(struct crypto_tls_alpn *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}
