"""The Segment stand-in over real HTTP: faults (status, times, Retry-After,
delay, failing message ids, per write key, set over HTTP).
"""

from __future__ import annotations

import json
import time
import typing as t

import requests

from .test_standin import KEY
from .test_standin import post
from .test_standin import track


def test_faults_status_times_and_retry_after(segment: t.Any) -> None:
    segment.set_fault(status=429, times=2, retry_after=7)
    answers = [post(segment, [track(n)]) for n in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "7"
    assert answers[0].json()["code"] == "fault"
    assert segment.message_ids() == ["m-2"] and segment.requests == 3
    segment.set_fault(status=503)  # until cleared
    assert [post(segment, [track(9)]).status_code for _ in range(3)] == [503] * 3
    segment.clear_faults()
    assert post(segment, [track(9)]).status_code == 200
    segment.set_fault(status=500, times=0)
    assert post(segment, [track(10)]).status_code == 200


def test_fault_delay(segment: t.Any) -> None:
    segment.set_fault(delay=1.0, times=1)
    started = time.monotonic()
    assert post(segment, [track(1)]).status_code == 200
    assert time.monotonic() - started >= 1.0
    started = time.monotonic()
    assert post(segment, [track(2)]).status_code == 200
    assert time.monotonic() - started < 1.0  # once only


def test_fault_fail_message_ids(segment: t.Any) -> None:
    segment.set_fault(fail_message_ids=["m-bad"], status=503, times=1)
    assert post(segment, [track(1)]).status_code == 503
    response = post(segment, [track(2), track("bad"), track(3)])
    assert response.status_code == 400 and "message 1" in response.json()["message"]
    assert post(segment, [track(2), track(3)]).status_code == 200
    assert segment.message_ids() == ["m-2", "m-3"]
    segment.clear_faults()
    assert post(segment, [track("bad")]).status_code == 200


def test_a_fault_of_one_write_key_leaves_the_others(segment: t.Any) -> None:
    other = ("wk_other_5678", "")
    segment.set_fault(status=503, write_key="wk_other_5678")
    assert post(segment, [track(1)]).status_code == 200
    data = json.dumps({"batch": [track(2)]})
    headers = {"Content-Type": "application/json"}
    answers = [
        requests.post(segment.url + "/v1/batch", data=data, headers=headers, auth=other)
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [503, 503]
    segment.set_fault(status=500, times=1, write_key="wk_other_5678")
    assert post(segment, [track(3)]).status_code == 200
    assert [
        requests.post(
            segment.url + "/v1/batch", data=data, headers=headers, auth=other
        ).status_code
        for _ in range(2)
    ] == [500, 200]
    segment.set_fault(status=503, write_key="wk_other_5678")
    segment.clear_faults("wk_other_5678")
    assert post(segment, [track(4)], extra={}).status_code == 200
    assert segment.message_ids() == ["m-1", "m-3", "m-2", "m-4"]
    assert requests.post(
        segment.url + "/faults", json={"status": 503, "write_key": KEY}
    ).json()["success"]
    assert post(segment, [track(5)]).status_code == 503
    requests.post(segment.url + "/faults", json={})  # clears every fault
    assert post(segment, [track(5)]).status_code == 200
    assert (
        requests.post(segment.url + "/faults", json={"write_key": ""}).status_code
        == 400
    )


def test_faults_over_http(segment: t.Any) -> None:
    url = segment.url + "/faults"
    assert requests.post(url, json={"status": 500, "times": 1}).json()["success"]
    assert post(segment, [track()]).status_code == 500
    requests.post(url, json={"fail_message_ids": ["m-1"]})
    assert post(segment, [track()]).status_code == 400
    requests.post(url, json={})
    assert post(segment, [track()]).status_code == 200
    for bad in ({"status": 99}, {"times": -1}, {"delay": "x"}, {"nope": 1}, [1],
                {"fail_message_ids": "m-1"}):  # fmt: skip
        answer = requests.post(url, json=bad)
        assert answer.status_code == 400, bad
    assert post(segment, [track(2)]).status_code == 200
