"""FreeIPA's Web UI, served by the http service of the split stack and of the monolith
(each mode in turn), driven by a real browser:
headless Chromium (selenium + chromium-driver) logs in through the login form (forms
login: /ipa/session/login_password, a Kerberos ticket made by ipaserver, a session
cookie from mod_auth_gssapi) and the user list shows a user added through the API.

The browser runs on the host and reaches the server name's published 443 (the stack's
proxy, as a client's network would); Chromium maps ipa.example.test, FreeIPA's server
name, to it, so the URL, Host and Referer are what FreeIPA expects. http's
certificate is self-signed until the CA issues it (docs/freeipa.md): the browser is told
to accept it, which is the only thing this test does not prove."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.otp import add_otp_user, totp
from tests.integration.stack_client import KINIT_ADMIN, Client, admin_env

ARTIFACTS = Path(__file__).resolve().parents[2] / ".ipabuild" / "artifacts"


def _https_port(stack: str) -> str:
    """The host port the server name's 443 is published on: the proxy in front, in
    either mode."""
    out = subprocess.run(["podman", "port", f"ipabuild-{stack}-server", "443/tcp"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0].rsplit(":", 1)[1]


@pytest.fixture
def client(ipa_client: Client) -> Client:
    """Each mode in turn (conftest's ``ipa_client``): the monolith serves the same UI."""
    return ipa_client


@pytest.fixture(scope="module")
def browser(mode: str, mode_stack: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    try:
        from selenium import webdriver
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[test]' (scripts/setup-host.sh)")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromium-driver are needed (scripts/setup-host.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--ignore-certificate-errors", "--window-size=1280,900",
                 "--host-resolver-rules=MAP ipa.example.test "
                 f"127.0.0.1:{_https_port(mode_stack)}",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_admin_logs_in_through_the_form_and_sees_the_user(
        client: Client, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    user = f"carol{uuid.uuid4().hex[:4]}"
    added = client.run(KINIT_ADMIN + ' && printf "%s\\n%s\\n" "$P" "$P" | '
                       'ipa user-add "$U" --first Carol --last Webb --password',
                       env={**admin_env(client), "U": user, "P": f"Pw-{uuid.uuid4().hex}"})
    assert added.returncode == 0, added.stdout + added.stderr

    driver = browser
    wait = WebDriverWait(driver, 60)  # type: ignore[arg-type]
    driver.get("https://ipa.example.test/ipa/ui/")  # type: ignore[attr-defined]
    # The login form (name= is also on its labels and wrappers: the inputs are wanted).
    field = wait.until(ready.visibility_of_element_located(
        (By.CSS_SELECTOR, "input[name=username]")))
    field.send_keys("admin")
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(  # type: ignore[attr-defined]
        client.secret("admin-password"), Keys.ENTER)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "web-ui-users.png"
    try:
        # After the login the UI opens the active users' list.
        wait.until(ready.presence_of_element_located((By.LINK_TEXT, user)))
    finally:
        driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000
    # The header names the logged-in user by its full name.
    assert "Administrator" in driver.page_source  # type: ignore[attr-defined]

    # The certificates page: ipaserver's cert-find through Dogtag's REST search on the
    # CA's own port (framework patch 0006); the stack's own certificates are listed,
    # http's among them (issued for the server name).
    driver.get("https://ipa.example.test/ipa/ui/#/e/cert/search")  # type: ignore[attr-defined]
    shot = ARTIFACTS / "web-ui-certificates.png"
    try:
        wait.until(ready.text_to_be_present_in_element(
            (By.TAG_NAME, "body"), "CN=ipa.example.test"))
    finally:
        driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert "CN=Certificate Authority" in driver.page_source  # type: ignore[attr-defined]


def test_two_factor_user_logs_in_with_password_and_code(
        client: Client, browser: object) -> None:
    """An OTP user types password+code into the form's password field, as FreeIPA's login
    page asks ("Password or Password+One-Time Password"): ipaserver's forms login gets a
    FAST armor ticket by anonymous PKINIT and the KDC checks the code through ipa-otpd.
    The user lands on its own page, which names it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    user = add_otp_user(client)
    driver = browser
    driver.delete_all_cookies()  # type: ignore[attr-defined]  # not admin's session
    wait = WebDriverWait(driver, 60)  # type: ignore[arg-type]
    driver.get("https://ipa.example.test/ipa/ui/")  # type: ignore[attr-defined]
    field = wait.until(ready.visibility_of_element_located(
        (By.CSS_SELECTOR, "input[name=username]")))
    field.send_keys(user["U"])
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(  # type: ignore[attr-defined]
        user["UPW"] + totp(user["SECRET"]), Keys.ENTER)
    shot = ARTIFACTS / "web-ui-otp-user.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        # A user without admin rights opens on its own details page (its login shown).
        wait.until(ready.text_to_be_present_in_element((By.TAG_NAME, "body"), "Two Factor"))
    finally:
        driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert user["U"] in driver.page_source  # type: ignore[attr-defined]
