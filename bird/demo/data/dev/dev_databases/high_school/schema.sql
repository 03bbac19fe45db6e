-- One school year of a secondary school: teachers, students, courses, enrolments with
-- final grades, and recorded absences.
CREATE TABLE teacher (
    teacher_id INTEGER PRIMARY KEY,
    first_name TEXT,
    last_name TEXT NOT NULL,
    department TEXT,
    hire_date TEXT,
    full_time INTEGER
);

CREATE TABLE student (
    student_id INTEGER PRIMARY KEY,
    first_name TEXT,
    last_name TEXT NOT NULL,
    birth_date TEXT,
    grade_level INTEGER,
    gender TEXT,
    lunch_status TEXT,
    email TEXT
);

CREATE TABLE course (
    course_id INTEGER PRIMARY KEY,
    course_code TEXT NOT NULL,
    title TEXT NOT NULL,
    department TEXT,
    credits REAL,
    teacher_id INTEGER REFERENCES teacher (teacher_id)
);

CREATE TABLE enrollment (
    enrollment_id INTEGER PRIMARY KEY,
    student_id INTEGER NOT NULL REFERENCES student (student_id),
    course_id INTEGER NOT NULL REFERENCES course (course_id),
    term TEXT NOT NULL,
    score REAL,
    final_grade TEXT
);

CREATE TABLE absence (
    absence_id INTEGER PRIMARY KEY,
    student_id INTEGER NOT NULL REFERENCES student (student_id),
    absence_date TEXT NOT NULL,
    period INTEGER,
    excused TEXT,
    reason TEXT
);
