/* SPDX-License-Identifier: MIT */
/*
 * The TLS client side of a probe: one handshake with SNI on a socket the
 * caller connected, to learn which certificate a server actually presents
 * (a server renewed for but not reloaded still shows the old one). Nothing
 * is verified, on purpose: the question is what is served, not whether it
 * is trusted, and the local CA's certificates are not in any trust store.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "crypto/crypto_int.h"
#include "util/util.h"

/* How often a waiting handshake asks whether to give up. */
#define PROBE_SLICE_MS 100

int crypto_tls_probe(int fd, const char *sni, int timeout_ms, crypto_tls_probe_stop stop,
		     void *arg, struct crypto_cert **leaf, struct crypto_err *err)
{
	uint64_t deadline = util_mono_ms() + (uint64_t)timeout_ms;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	X509 *x = NULL;
	char reason[128];
	int rc = -EPROTO;

	*leaf = NULL;
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !(ssl = SSL_new(ctx)) || !SSL_set_fd(ssl, fd) ||
	    !SSL_set_tlsext_host_name(ssl, sni)) {
		crypto_err_set(err, "TLS client: %s", crypto_ssl_reason(reason, sizeof(reason)));
		rc = -ENOMEM;
		goto out;
	}
	SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	for (;;) {
		int r = SSL_connect(ssl), e = SSL_get_error(ssl, r);
		struct pollfd p = {.fd = fd};

		if (r == 1)
			break;
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			crypto_err_set(err, "TLS handshake failed: %s",
				       crypto_ssl_reason(reason, sizeof(reason)));
			goto out;
		}
		if (stop && stop(arg)) {
			crypto_err_set(err, "TLS handshake given up at shutdown");
			rc = -ECANCELED;
			goto out;
		}
		if (util_mono_ms() >= deadline) {
			crypto_err_set(err, "TLS handshake timed out after %d ms", timeout_ms);
			rc = -ETIMEDOUT;
			goto out;
		}
		p.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		(void)poll(&p, 1, PROBE_SLICE_MS);
	}
	x = SSL_get1_peer_certificate(ssl);
	if (!x) {
		crypto_err_set(err, "the server presented no certificate");
		goto out;
	}
	*leaf = crypto_cert_wrap(x);
	if (!*leaf) {
		X509_free(x);
		crypto_err_set(err, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	(void)SSL_shutdown(ssl); /* close_notify; the answer does not matter */
	rc = 0;
out:
	ERR_clear_error();
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return rc;
}
