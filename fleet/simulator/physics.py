"""The truck model's numbers, in one place (docs/simulator.md explains each).

These are fixed: models trained on simulated data are judged against them, so they are never
tuned afterwards to flatter a score. The reference machine is a 90 t class mechanical-drive
haul truck (Cat 777 / Komatsu HD785 size) with oil-cooled multi-disc brakes, which also do the
continuous retarding on downhill grades. Other payload classes scale with payload capacity.
"""

from __future__ import annotations

G = 9.81  # m/s^2
AMBIENT_C = 20.0  # deg C, air temperature of the simulated shift (fixed)
ATM_KPA = 101.3  # kPa, to turn gauge pressures absolute for the gas law
KELVIN = 273.15

# --- mass, power, resistance (per tonne of rated payload) --------------------------------------
EMPTY_MASS_PER_T = 0.78  # t of empty truck per t of payload: 70 t empty for 90 t payload
ENGINE_KW_PER_T = 7.8  # kW gross: 700 kW for the 90 t truck
AUX_KW_PER_T = 0.28  # kW of fans, pumps, alternator at any load: ~25 kW
DRIVE_EFFICIENCY = 0.80  # engine -> wheels (torque converter, transmission, final drives)
RETARD_KW_PER_T = 9.0  # kW of continuous retarding: 810 kW, i.e. ~25 km/h loaded down 10 %
RIMPULL_COEFF = 0.30  # max tractive force / (gross weight * g): traction-limited at low speed
ROLLING_RESISTANCE = 0.025  # of the weight: a well-kept haul road (2-3 %)
FRONT_SHARE_EMPTY = 0.45  # of the gross weight on the front axle, empty
FRONT_SHARE_LOADED = 0.33  # ... and at rated payload (the body sits over the rear axle)

# --- speed and acceleration limits ---------------------------------------------------------------
V_MAX = 50 / 3.6  # m/s, the AHS top speed (empty on the flat reaches it)
A_ACCEL = 0.6  # m/s^2, most the drive train is asked for
A_BRAKE = 1.0  # m/s^2, most deceleration the AHS commands in service braking
A_PLAN = 0.9  # m/s^2, what stops and speed caps ahead are planned with (inside A_BRAKE)
A_STOP = 1.5  # m/s^2, controlled all-stop (ISO 17757): firmer than service braking
SPOT_DISTANCE = 40.0  # m, slow final approach under a shovel / onto a tip head
SPOT_SPEED = 2.0  # m/s (7 km/h) on that approach
FOLLOW_GAP = 60.0  # m, nose-to-nose distance kept behind the truck ahead: beyond the FMS safety
# distance (COLLISION_SAFETY_DISTANCE_M, 50 m), so a following truck is not a collision risk
# A follower closes on the truck ahead no faster than brings it to FOLLOW_MIN in FOLLOW_CLOSE_S,
# so that at constant speeds it never looks, over the FMS's collision horizon
# (COLLISION_HORIZON_S, 10 s), like it will come within the FMS safety distance (50 m): an AHS
# eases into its following gap (offline, 300 trucks: same-edge pairs the FMS would flag fall
# from 3,112 to 51 samples in 15 min, tonnes per hour unchanged)
FOLLOW_MIN = 60.0  # m
FOLLOW_CLOSE_S = 15.0  # s
QUEUE_ZONE = 300.0  # m before a busy loading unit or dump where a waiting truck is "Queued"

# --- cycle times -------------------------------------------------------------------------------
PAYLOAD_FILL = (0.95, 1.05)  # loaded payload / rated payload, uniform per load
TIP_RAISE_S, TIP_S, TIP_LOWER_S = 20.0, 25.0, 15.0  # body up, material out, body down
REFUEL_BELOW = 0.15  # of the tank: go to the park and refuel after the next dump
REFUEL_S = 600.0  # s parked at the fuel bay / park for a full tank
TANK_L_PER_T = 12.2  # L of fuel tank per t of payload: ~1,100 L
FUEL_L_PER_KWH = 0.23  # L of diesel per kWh at the flywheel (~195 g/kWh)
DEPART_SPACING_S = 15.0  # s between trucks leaving the park at the start (at most 10 min)

# --- thermal models (first-order lags towards a load-dependent normal) -------------------------
COOLANT_IDLE_C = 82.0  # deg C, thermostat-regulated normal at idle...
COOLANT_LOAD_C = 14.0  # ... plus this much at full engine load
COOLANT_TAU_S = 180.0  # s, running
COOLANT_TAU_OFF_S = 900.0  # s, engine off (cools towards ambient)
BRAKE_OIL_WARM_C = 25.0  # deg C above ambient: brake cooling oil with the engine running
BRAKE_C_PER_KW = (0.07, 0.10)  # deg C per kW of braking power, front / rear (60 % at the rear)
BRAKE_TAU_S = 240.0  # s
TYRE_RATED_LOAD_PER_T = 0.32  # t of rated load per tyre per t of payload: ~29 t
TYRE_WARM_C = 5.0  # deg C above ambient, standing
TYRE_HEAT_C = 25.0  # deg C above that at rated tyre load and 10 m/s
TYRE_TAU_S = 1200.0  # s: a 2.7 m OTR tyre heats slowly
TYRE_COLD_KPA = 700.0  # kPa gauge at 20 deg C (cold inflation)
TYRE_COLD_SPREAD_KPA = 8.0  # kPa, 1 sigma between tyres as inflated
TYRE_REF_C = 20.0  # deg C at which the cold pressure is set

# --- sensors (1 sigma noise) ---------------------------------------------------------------------
GPS_SIGMA_M = (0.3, 1.0)  # m horizontal, uniform per truck (RTK float .. good DGPS)
GPS_VERTICAL_FACTOR = 1.5  # vertical sigma / horizontal
HEADING_SIGMA_DEG = 1.0
SPEED_SIGMA_KMH = 0.1
COOLANT_SIGMA_C = 0.3
BRAKE_SIGMA_C = 0.5
TYRE_TEMP_SIGMA_C = 0.5
TYRE_PRESSURE_SIGMA_KPA = 2.0
FUEL_SIGMA_PCT = 0.3  # slosh
STRUT_AREA_M2_PER_T = 0.0005  # m^2 of strut bore per t of payload: 0.045 m^2 (240 mm bore)
STRUT_SIGMA_STILL = 0.01  # relative, standing
STRUT_SIGMA_ROAD = 0.05  # relative, added at 8 m/s and above (road-induced bounce)
UNSPRUNG_FRONT, UNSPRUNG_REAR = 0.057, 0.143  # of the empty mass below the struts
PAYLOAD_METER_TAU_S = 0.5  # s, the on-board payload meter's filter (holds while moving)
PAYLOAD_METER_BIAS_T = 0.5  # t, 1 sigma per-truck calibration error
PAYLOAD_ACCURACY_T = 1.5  # t, what HaulTruckPayloadV1.Accuracy reports

# --- OEM diagnostic thresholds (what raises MachineDiagnosticV2) ----------------------------------
COOLANT_ALARM_C = 105.0
TYRE_LOW_KPA = 600.0
BRAKE_ALARM_C = 130.0
HYSTERESIS = {"coolant": 3.0, "tyre": 15.0, "brake": 5.0}  # clears only this far back
