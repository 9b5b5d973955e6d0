"""Fixtures of the WeChat Pay tests: one generated key tree for the session."""

from __future__ import annotations

import pytest

from tests.channels.wechatpay.support import WxWorld, make_world


@pytest.fixture(scope="session")
def wx(tmp_path_factory: pytest.TempPathFactory) -> WxWorld:
    return make_world(tmp_path_factory.mktemp("wechatpay-keys") / "wechatpay")
