import math
from pathlib import Path

import numpy as np
import pytest

from vpr_core.errors import ImageError, VprError
from vpr_core.geodesy import LocalFrame, UtmZone, utm_name_fields, utm_to_latlon
from vpr_core.io.geoset import load_geoset, parse_vpr_name, read_csv, vpr_name


def test_local_frame_is_true_enu():
    """ENU through pymap3d: round trip, true north, and no UTM grid convergence."""
    f = LocalFrame(48.1374, 11.5755, 500.0)
    e, n, u = f.enu([48.1374, 48.1374 + 1e-3], [11.5755, 11.5755], [500.0, 500.0])
    assert abs(e[0]) < 1e-6 and abs(n[0]) < 1e-6 and abs(e[1]) < 1e-6  # due north stays on the north axis
    assert n[1] == pytest.approx(111.2, abs=0.2)
    lat, lon, h = f.lla(e, n, u)
    assert np.allclose(lat, [48.1374, 48.1384], atol=1e-10) and np.allclose(h, 500.0, atol=1e-6)


def test_utm_fields_of_names():
    e, n, number, letter = utm_name_fields(48.1374, 11.5755)
    assert (number, letter) == (32, "U")
    assert utm_to_latlon(e, n, UtmZone(number, letter)) == pytest.approx((48.1374, 11.5755), abs=1e-8)  # 1 mm
    assert utm_name_fields(86.0, 10.0) is None  # beyond UTM: names carry lat/lon only
    assert vpr_name(86.0, 10.0, "x").startswith("@nan@nan@0@Z@86.0000000@10.0000000@x@")
    g = parse_vpr_name(Path(vpr_name(86.0, 10.0, "x")))
    assert g.utm is None and (g.lat, g.lon) == (86.0, 10.0)


def test_map_across_a_zone_border_at_high_latitude_is_true_enu(street_map, tmp_path):
    """10 places 240 m apart at 69 N crossing the UTM 33/34 border (18 E): poses equal pymap3d ENU to 5 cm."""
    import pymap3d

    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer
    from vpr_core.localize.outputs import pose_fields
    from vpr_core.map.format import load_map, save_map

    m = load_map(street_map)
    n = len(m)
    lat0, lon0 = 69.0, 17.97
    # a straight line heading 80 degrees (east by north); 240 m steps over 2.2 km, crossing 18 E
    step_lat = 240 * np.cos(np.radians(80)) / 111_600
    step_lon = 240 * np.sin(np.radians(80)) / (111_600 * np.cos(np.radians(69)))
    k = np.minimum(np.arange(n), 9)
    m.lat, m.lon = lat0 + k * step_lat, lon0 + k * step_lon
    m.alt = np.full(n, np.nan)
    m.origin = (lat0, lon0, 0.0)
    assert m.lon[0] < 18.0 < m.lon[9]
    save_map(m, tmp_path / "arctic.vprmap")
    loc = Localizer.from_file(tmp_path / "arctic.vprmap", device="cpu")
    images = sorted(Path(loc.map.info["source"]).iterdir())
    for i in (0, 4, 9):
        est = loc.localize(load_image(images[i]))
        j = est.matches[0].index
        want = pymap3d.geodetic2enu(m.lat[j], m.lon[j], 0.0, lat0, lon0, 0.0)
        x, y, _ = pose_fields(est).position
        assert abs(x - want[0]) <= 0.05 and abs(y - want[1]) <= 0.05, (i, x, y, want)
        assert est.lat == pytest.approx(m.lat[j]) and est.lon == pytest.approx(m.lon[j])
    far = pymap3d.geodetic2enu(m.lat[9], m.lon[9], 0.0, lat0, lon0, 0.0)
    assert np.hypot(far[0], far[1]) > 2000 and loc.map.east[9] == pytest.approx(far[0], abs=0.05)


def test_polar_latitudes_are_accepted(tmp_path):
    (tmp_path / "p.csv").write_text("image,lat,lon\nimg1.jpg,86.5,10\nimg2.jpg,86.5001,10\n")
    rows = read_csv(tmp_path / "p.csv")
    from vpr_core.io.geoset import make_geoset

    g = make_geoset(rows)
    assert g.north[1] == pytest.approx(11.17, abs=0.05) and abs(g.east[1]) < 1e-6


def test_parse_vpr_name(tmp_path):
    p = tmp_path / "@502001.00@6961000.00@56@J@-27.4745684@153.0202540@ref0000001@@@@@@@@.jpg"
    g = parse_vpr_name(p)
    assert g.utm == (502001.0, 6961000.0, 56, "J")
    assert g.lat == pytest.approx(-27.4745684) and math.isnan(g.alt)
    with pytest.raises(VprError, match="carries no coordinates"):
        parse_vpr_name(tmp_path / "IMG_0001.jpg")
    with pytest.raises(VprError, match="invalid latitude"):
        parse_vpr_name(tmp_path / "@1@2@56@J@nan@153.0@x@@.jpg")


def test_csv(tmp_path):
    (tmp_path / "a.csv").write_text("image,lat,lon,alt\nimg1.jpg,48.1,11.5,520\n")
    rows = read_csv(tmp_path / "a.csv")
    assert rows[0].path == tmp_path / "img1.jpg" and rows[0].alt == 520
    (tmp_path / "b.csv").write_text("image,latitude\nimg1.jpg,48.1\n")
    with pytest.raises(VprError, match=r"b\.csv: missing column\(s\) lat, lon"):
        read_csv(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("image,lat,lon\nimg1.jpg,NaN,11\n")
    with pytest.raises(VprError, match=r"c\.csv:2: invalid lat/lon"):
        read_csv(tmp_path / "c.csv")


def test_empty_folder(tmp_path):
    with pytest.raises(ImageError, match="no images found"):
        load_geoset(tmp_path)


def test_street_geoset_uses_filename_utm(street):
    db = load_geoset(street / "database")
    d = np.diff(db.east)
    assert np.allclose(d, 2.0, atol=0.011) and np.allclose(db.north, db.north[0], atol=0.011)
