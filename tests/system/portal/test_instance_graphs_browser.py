"""A real TCG guest's graphs: the guest spins its vCPU and writes to its disk, its host samples it from
libvirt every two seconds, and the instance page in Chromium draws what the host kept.

Screenshots land in tests/artifacts/portal-graphs-*.png.
"""

from __future__ import annotations

import base64
import time

import libvirt
import pytest
from django.test import Client

from portal.models import Instance
from tests.http import ApiUser
from tests.png import distinct_colours
from tests.processes import Cluster, free_port, purge_broker, wait_until

from .conftest import PORTAL_HOST, shot
from .test_portal_browser import delete_everything, log_in

pytestmark = pytest.mark.system

# One vCPU kept busy by the shell, and 4 MiB written through to the disk every second, past the end of
# the demo image's 32 MiB (the overlay is the flavor's 1 GiB): nothing the guest needs is overwritten.
BUSY = """#!/bin/sh
( while true; do dd if=/dev/zero of=/dev/vda bs=1M seek=64 count=4 conv=fsync 2>/dev/null; sleep 1; done ) &
echo GRAPHS-BUSY
while true; do :; done
"""


@pytest.fixture(scope="module")
def portal_cluster(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """The portal's cloud, its host sampling its guests every two seconds rather than ten."""
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("graphs-cluster"))
    cluster.proxy_port = free_port()
    cluster.proxy_origin = f"http://127.0.0.1:{cluster.proxy_port}"
    cluster.start_conductor()
    cluster.start_compute(PORTAL_HOST, uri="qemu:///system", COMPUTE_GRAPHS_INTERVAL="2")
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


# A vCPU spinning under TCG takes a core when it can get one; on a machine shared with other work it gets
# somewhat less, which the graph shows truthfully. Above this is a busy guest (an idle one is near 0).
BUSY_PERCENT = 60


def recent(values: list, count: int = 3) -> list:
    return [value for value in values if value is not None][-count:]


def libvirt_cpu_percent(server_id: str, seconds: float = 5.0) -> float:
    """The guest's CPU use as libvirt itself counts it now, for comparison with the graph."""
    conn = libvirt.open("qemu:///system")
    try:
        domain = conn.lookupByUUIDString(server_id)
        started, cpu_before = time.monotonic(), domain.info()[4]
        time.sleep(seconds)
        elapsed, cpu_after = time.monotonic() - started, domain.info()[4]
        return (cpu_after - cpu_before) / 1e9 / domain.info()[3] / elapsed * 100
    finally:
        conn.close()


def test_a_busy_guest_shows_high_cpu_and_disk_writes_in_its_drawn_graphs(cloud, page, live_server):
    owner = ApiUser(live_server.url)
    body = {
        "server": {
            "name": "busy",
            "imageRef": str(cloud.image.id),
            "flavorRef": cloud.flavor.flavorid,
            "networks": "none",
            "config_drive": True,
            "user_data": base64.b64encode(BUSY.encode()).decode(),
        }
    }
    response = owner.post("/servers", body)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    client = Client()
    client.force_login(owner.membership.user)
    try:
        wait_until(lambda: owner.server(server_id)["status"] == "ACTIVE", 180, interval=1, message="ACTIVE")

        def busy_graphs():
            answer = client.get(f"/instances/{server_id}/graphs", {"range": "hour"})
            assert answer.status_code == 200, answer.content
            series = answer.json()["series"]
            # Six busy points (a minute): enough to be seen on a chart of the last hour.
            cpu = recent(series.get("cpu_percent", []), 6)
            written = recent(series.get("disk.vda.write_bytes", []), 6)
            if len(cpu) == 6 and min(cpu[-3:]) > BUSY_PERCENT and written and max(written) > 512 * 1024:
                return series
            return None

        series = wait_until(busy_graphs, 240, interval=2, message="high CPU and disk writes in the guest's graphs")
        # The graph tells what libvirt counts: the guest is busy by libvirt's own reading too.
        measured = libvirt_cpu_percent(server_id)
        assert measured > BUSY_PERCENT - 15, (measured, recent(series["cpu_percent"], 6))
        assert recent(series["disk.vda.write_ops"], 6) and max(recent(series["disk.vda.write_ops"], 6)) > 0
        assert 0 < recent(series["memory_used_mib"])[-1] <= recent(series["memory_maximum_mib"])[-1]

        # The page draws it: six charts, the CPU's and the disk's with their lines, on canvases not blank.
        log_in(page, live_server.url, owner.membership.user.username, next_path=f"/instances/{server_id}/")
        graphs = page.locator("#instance-graphs")
        page.wait_for_function("document.querySelector('#instance-graphs').dataset.loaded !== undefined")
        cpu_chart = graphs.locator("figure[data-graph='cpu']")
        disk_chart = graphs.locator("figure[data-graph='disk-bytes']")
        assert cpu_chart.get_attribute("data-lines") == "1"
        assert int(disk_chart.get_attribute("data-lines")) >= 2  # vda read and write
        assert graphs.locator("figure[data-graph='network-bytes']").get_attribute("data-lines") == "0"
        cpu_canvas = cpu_chart.locator("canvas")
        box = cpu_canvas.bounding_box()
        assert box["width"] > 300 and box["height"] > 100
        # Pixels of the CPU series' colour (#1a5fb4: its line, and the translucent fill under it), counted in
        # the canvas itself; the grid, the axes and the labels are grey and black.
        drawn = page.evaluate(
            """(canvas) => {
                const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
                let n = 0;
                for (let i = 0; i < data.length; i += 4) {
                    const near = Math.abs(data[i] - 26) + Math.abs(data[i + 1] - 95) + Math.abs(data[i + 2] - 180);
                    if (near < 60 && data[i + 3] > 0) n++;
                }
                return n;
            }""",
            cpu_canvas.element_handle(),
        )
        assert drawn > 100, drawn
        assert distinct_colours(cpu_canvas.screenshot()) > 3
        assert distinct_colours(disk_chart.locator("canvas").screenshot()) > 3
        graphs.scroll_into_view_if_needed()
        shot(page, "graphs-01-hour")

        page.get_by_role("button", name="Last day").click()
        page.wait_for_function(
            "document.querySelector('#instance-graphs').dataset.loaded > " + str(page.evaluate("Date.now()"))
        )
        assert cpu_chart.get_attribute("data-lines") == "1"
        shot(page, "graphs-02-day")
    finally:
        delete_everything([Instance.objects.get(uuid=server_id)])
