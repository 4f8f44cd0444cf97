"""Active customers at the gateway: distinct customers per window, bounded memory, no ids out."""

import threading

from obslab import conventions as c
from obslab.services.gateway.edge import CustomerWindow


def _window(now: list[float], **kwargs) -> CustomerWindow:
    return CustomerWindow(c.ACTIVE_CUSTOMER_WINDOWS, clock=lambda: now[0], **kwargs)


def test_a_customer_counts_once_per_window_however_many_requests():
    now = [1000.0]
    window = _window(now)
    for customer in ("cus_a", "cus_b", "cus_a", "cus_a"):
        window.record(customer)
    assert (window.active("5m"), window.active("1h")) == (2, 2)


def test_an_idle_customer_leaves_the_5m_window_then_the_hour():
    now = [1000.0]
    window = _window(now)
    window.record("cus_a")
    now[0] += 200
    window.record("cus_b")
    now[0] += 100                       # cus_a idle for exactly 5 minutes: out; cus_b for 100 s
    assert (window.active("5m"), window.active("1h")) == (1, 2)
    now[0] += 3500                      # cus_a idle 3600 s, cus_b 3600 s: out of the hour too
    assert (window.active("5m"), window.active("1h")) == (0, 0)


def test_a_returning_customer_is_active_again():
    now = [0.0]
    window = _window(now)
    window.record("cus_a")
    now[0] = 400.0
    assert window.active("5m") == 0
    window.record("cus_a")
    assert (window.active("5m"), window.active("1h")) == (1, 1)


def test_memory_is_bounded_by_forgetting_the_longest_idle_customers():
    now = [0.0]
    window = _window(now, max_customers=100)
    for i in range(250):
        now[0] += 1
        window.record(f"cus_{i}")
    assert window.active("1h") == 100 and len(window._last_seen) == 100
    assert "cus_249" in window._last_seen and "cus_0" not in window._last_seen


def test_records_from_many_threads_are_all_counted():
    window = CustomerWindow(c.ACTIVE_CUSTOMER_WINDOWS)

    def send(thread: int) -> None:
        for i in range(500):
            window.record(f"cus_{thread}_{i % 50}")

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (window.active("5m"), window.active("1h")) == (400, 400)
