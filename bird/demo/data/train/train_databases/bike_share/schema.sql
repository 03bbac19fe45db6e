-- A bike-sharing network over one season: docking stations, the fleet, riders, trips
-- and daily weather.
CREATE TABLE station (
    station_id INTEGER PRIMARY KEY,
    "Station Name" TEXT NOT NULL,
    "Neighborhood" TEXT,
    "Dock Count" INTEGER,
    "Installation Date" TEXT,
    "Elevation (m)" REAL
);

CREATE TABLE bike (
    bike_id INTEGER PRIMARY KEY,
    model TEXT,
    bike_type TEXT,
    commission_date TEXT,
    status TEXT
);

CREATE TABLE rider (
    rider_id INTEGER PRIMARY KEY,
    user_type TEXT NOT NULL,
    birth_year INTEGER,
    gender TEXT,
    signup_date TEXT,
    home_zip TEXT
);

CREATE TABLE trip (
    trip_id INTEGER PRIMARY KEY,
    bike_id INTEGER NOT NULL REFERENCES bike (bike_id),
    rider_id INTEGER NOT NULL REFERENCES rider (rider_id),
    start_station_id INTEGER NOT NULL REFERENCES station (station_id),
    end_station_id INTEGER REFERENCES station (station_id),
    start_time TEXT NOT NULL,
    end_time TEXT,
    duration_sec INTEGER,
    fare REAL
);

CREATE TABLE weather (
    date TEXT PRIMARY KEY,
    max_temp_c REAL,
    min_temp_c REAL,
    precipitation_mm REAL,
    mean_wind_kmh REAL,
    events TEXT
);
