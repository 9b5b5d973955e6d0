"""UnionPay test material: RSA keys are slow to make, so the PKIs are made once per session."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.unionpay import IssuedCert, TestPki, issue_merchant_cert
from tests.channels.unionpay.support import MER_ID


@pytest.fixture(scope="session")
def now_dt() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="session")
def pki(now_dt: datetime) -> TestPki:
    return TestPki.generate(now_dt)


@pytest.fixture(scope="session")
def other_pki(now_dt: datetime) -> TestPki:
    """A second, unrelated PKI whose certificates look the same but chain elsewhere."""
    return TestPki.generate(now_dt)


@pytest.fixture(scope="session")
def merchant(pki: TestPki, now_dt: datetime) -> IssuedCert:
    return issue_merchant_cert(pki.intermediate, MER_ID, now_dt)
