"""What every HTTP adapter shares: URL checks, Retry-After parsing, body
reading under a size cap (every content encoding undone in bounded steps),
address guards, masking secrets in what is shown, a connection pool bounded
over all hosts, proxies (CONNECT tunnels, :mod:`fetchq.http.proxy`), TLS
settings that name a refused certificate (:mod:`fetchq.http.tls`), and the
named errors of an HTTP exchange.

The URL fetcher (:mod:`fetchq.fetch`), the SMS sender (:mod:`fetchq.sms`) and
the API caller (:mod:`fetchq.api`) each build on these, so no adapter depends
on another.  :mod:`fetchq.fetch` re-exports the public names under the names
they have always had.
"""
