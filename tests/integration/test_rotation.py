# SPDX-License-Identifier: MIT
"""Rotation across files: bundle.pem, cert.pfx and status.json of one
generation agree after each renewal. (Pairs of separate files under load are
in test_pairs.py.)"""

import pytest

import certfs_harness as h

D = "rotate.example.com"


@pytest.mark.timeout(120)
def test_rotation_across_files_consistent(certfs):
    """bundle.pem, cert.pfx and status.json of one generation agree after
    each renewal."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    m = certfs()
    st = m.mkdir(D)
    for _ in range(5):
        m.renew(D)
        st = m.wait_state(D, state="valid", min_generation=st["generation"] + 1)
        leaf = h.pem_certs(m.read(D, "cert.pem"))[0]
        assert h.fingerprint(leaf).hex() == st["fingerprint_sha256"].replace(":", "").lower()
        blocks = h.pem_blocks(m.read(D, "bundle.pem"))
        assert h.key_matches_cert(h.load_key(blocks[0][1]), leaf)
        key, cert, _ = pkcs12.load_key_and_certificates(m.read(D, "cert.pfx"), None)
        assert cert == leaf and h.key_matches_cert(key, leaf)
