-- An island ferry operator over one summer: ports, the fleet, routes, sailings and
-- tickets sold.
CREATE TABLE port (
    port_id INTEGER PRIMARY KEY,
    port_name TEXT NOT NULL,
    island TEXT,
    opened_year INTEGER
);

CREATE TABLE vessel (
    vessel_id INTEGER PRIMARY KEY,
    "Vessel Name" TEXT NOT NULL,
    "Year Built" INTEGER,
    "Passenger Capacity" INTEGER,
    "Car Capacity" INTEGER,
    "Fuel Type" TEXT
);

CREATE TABLE route (
    route_id INTEGER PRIMARY KEY,
    route_code TEXT NOT NULL,
    origin_port_id INTEGER NOT NULL REFERENCES port (port_id),
    destination_port_id INTEGER NOT NULL REFERENCES port (port_id),
    distance_nm REAL,
    base_fare REAL,
    seasonal TEXT
);

CREATE TABLE sailing (
    sailing_id INTEGER PRIMARY KEY,
    route_id INTEGER NOT NULL REFERENCES route (route_id),
    vessel_id INTEGER NOT NULL REFERENCES vessel (vessel_id),
    departure_date TEXT NOT NULL,
    departure_time TEXT NOT NULL,
    status TEXT,
    delay_minutes INTEGER
);

CREATE TABLE ticket (
    ticket_id INTEGER PRIMARY KEY,
    sailing_id INTEGER NOT NULL REFERENCES sailing (sailing_id),
    passenger_type TEXT,
    with_vehicle INTEGER,
    price REAL,
    channel TEXT,
    purchase_date TEXT
);
