"""facts/http.parse_answer: what the one HTTP probe through nginx makes of an answer (the probe
itself runs in every host test: ValidateService, rollback, status)."""

from bingo_host.facts import http

URL = "http://localhost/api/health"


def test_an_answer_with_a_body():
    a = http.parse_answer(URL, b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 3\r\n"
                               b"Connection: close\r\n\r\nok\n")
    assert (a.status, a.location, a.body, a.error, a.ok) == (200, None, b"ok\n", None, True)


def test_a_redirect_names_its_location_whatever_the_header_case():
    a = http.parse_answer(URL, b"HTTP/1.1 301 Moved Permanently\r\nlocation: https://bingo.example.com/\r\n\r\n")
    assert (a.status, a.location, a.ok) == (301, "https://bingo.example.com/", False)


def test_the_body_is_capped():
    a = http.parse_answer(URL, b"HTTP/1.1 503 x\r\n\r\n" + b"y" * (http.MAX_BODY + 10))
    assert a.status == 503 and len(a.body) == http.MAX_BODY


def test_what_is_not_an_http_answer_is_no_answer():
    for data in (b"", b"HTTP/1.1 200 OK\r\nno end of head", b"SSH-2.0-OpenSSH\r\n\r\n",
                 b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n", b"HTTP/2 200\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000 + b"\r\n"):
        a = http.parse_answer(URL, data)
        assert a.status is None and a.error.startswith("not an HTTP answer"), data[:40]

