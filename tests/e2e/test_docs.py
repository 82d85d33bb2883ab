"""GET /docs in a real browser (Debian's headless Chromium through
chromedriver): the page renders every operation of /openapi.json, shows a
response schema when an operation is opened, filters, logs no console error,
runs under its Content-Security-Policy, and shows a module's markup as text
instead of running it."""
import os
import shutil
import tempfile
import unittest

from harness import Server, request

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:                      # deploy/test.sh installs python3-selenium
    webdriver = None

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
METHODS = ("get", "put", "post", "delete", "patch")


def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if webdriver is None or missing:
        raise AssertionError("the docs page test needs Debian's chromium, chromium-driver and python3-selenium "
                             "(deploy/test.sh installs them); missing: %s" % (missing or ["selenium"]))
    profile = tempfile.mkdtemp(prefix="gtmd-chromium-")
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-extensions", "--user-data-dir=" + profile):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
    except WebDriverException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    d.set_page_load_timeout(30)
    return d, profile


def operations(doc):
    return [(p, m, item[m]) for p, item in doc["paths"].items() for m in METHODS if m in item]


class DocsPageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.driver, cls.profile = browser()

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        shutil.rmtree(cls.profile, ignore_errors=True)

    def load(self, srv):
        d = self.driver
        d.get("http://127.0.0.1:%d/docs" % srv.port)
        WebDriverWait(d, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                   != "loading")
        self.assertEqual(d.find_element(By.TAG_NAME, "body").get_attribute("data-state"), "ready",
                         d.find_element(By.ID, "content").text)

    def console_errors(self):
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def test_renders_every_operation(self):
        with Server(module_dir=os.environ["MODULE_DIR"]) as srv:
            r = request(srv, "GET", "/docs")
            self.assertEqual(r.status, 200)
            self.assertTrue(r.header("content-type").startswith("text/html"))
            self.assertIn("default-src 'none'", r.header("content-security-policy"))
            doc = request(srv, "GET", "/openapi.json").json()
            self.load(srv)
            d = self.driver
            shown = {(e.get_attribute("data-path"), e.get_attribute("data-method"))
                     for e in d.find_elements(By.CSS_SELECTOR, "details.op")}
            self.assertEqual(shown, {(p, m) for p, m, _ in operations(doc)})
            self.assertEqual(d.find_element(By.TAG_NAME, "body").get_attribute("data-operations"),
                             str(len(shown)))
            self.assertIn(doc["info"]["version"], d.find_element(By.ID, "version").text)

            # open one operation: its 200 schema lists the documented properties
            path = "/api/companies/{company_id}"
            op = doc["paths"][path]["get"]
            el = d.find_element(By.CSS_SELECTOR, 'details.op[data-method="get"][data-path="%s"]' % path)
            self.assertFalse(el.find_element(By.CSS_SELECTOR, ".body").is_displayed())
            el.find_element(By.TAG_NAME, "summary").click()
            WebDriverWait(d, 10).until(lambda _: el.find_element(By.CSS_SELECTOR, ".body").is_displayed())
            schema = op["responses"]["200"]["content"]["application/json"]["schema"]
            if "$ref" in schema:
                schema = doc["components"]["schemas"][schema["$ref"].split("/")[-1]]
            text = el.find_element(By.CSS_SELECTOR, '.response[data-status="200"] .schema').text
            for prop in schema["properties"]:
                self.assertIn(prop, text)
            self.assertIn(op["summary"], el.text)
            self.assertIn("auth", el.find_element(By.CSS_SELECTOR, ".lock").text)

            # the filter hides what does not match
            box = d.find_element(By.ID, "filter")
            box.send_keys("relations")
            visible = [e.get_attribute("data-path") for e in d.find_elements(By.CSS_SELECTOR, "details.op")
                       if e.is_displayed()]
            expect = [p for p, m, o in operations(doc) if "relations" in (m + " " + p + " " + o.get("summary", "")).lower()]
            self.assertEqual(sorted(visible), sorted(expect))
            self.assertTrue(visible)
            box.clear()
            box.send_keys(" ")
            box.send_keys("\b")
            self.assertEqual(self.console_errors(), [])

    def test_module_markup_is_text(self):
        with Server(module_dir=os.environ["FX_MODULE_DIR"]) as srv:
            self.load(srv)
            d = self.driver
            el = d.find_element(By.ID, "op-fxGetItem")
            el.find_element(By.TAG_NAME, "summary").click()
            self.assertIn('<img src=x onerror="window.fxInjected=1">An item', el.text)
            self.assertIn("</script><script>window.fxInjected=2</script>", el.text)
            self.assertIsNone(d.execute_script("return window.fxInjected === undefined ? null : window.fxInjected"))
            self.assertEqual(d.find_elements(By.CSS_SELECTOR, "#content img"), [])
            self.assertEqual(self.console_errors(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
