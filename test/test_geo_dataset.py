import math

import numpy as np
import pytest

from vpr_core.errors import ImageError, VprError
from vpr_core.geodesy import UtmZone, from_utm, to_utm, zone_of
from vpr_core.io.geoset import load_geoset, parse_vpr_name, read_csv


def test_utm_round_trip_and_forced_zone():
    zone = zone_of(48.1374, 11.5755)
    assert (zone.number, zone.letter) == (32, "U")
    e, n = to_utm(np.array([48.1374]), np.array([11.5755]), zone)
    lat, lon = from_utm(e, n, zone)
    assert abs(lat[0] - 48.1374) < 1e-7 and abs(lon[0] - 11.5755) < 1e-7  # < 1 cm
    # a point just across the zone border is expressed in the map's zone, continuously
    e2, _ = to_utm(np.array([48.0]), np.array([12.0001]), UtmZone(32, "U"))
    e3, _ = to_utm(np.array([48.0]), np.array([11.9999]), UtmZone(32, "U"))
    assert 0 < e2[0] - e3[0] < 20


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
