SELECT COUNT(vessel_id) FROM vessel WHERE `Fuel Type` = 'D'	ferry_line
SELECT `Vessel Name` FROM vessel WHERE `Car Capacity` IS NULL	ferry_line
SELECT COUNT(sailing_id) FROM sailing WHERE status = 'CX'	ferry_line
SELECT `Vessel Name` FROM vessel ORDER BY `Year Built` LIMIT 1	ferry_line
SELECT COUNT(ticket_id) FROM ticket WHERE channel = 'onboard'	ferry_line
SELECT AVG(delay_minutes) FROM sailing WHERE status = 'DL'	ferry_line
SELECT port_name FROM port WHERE island = 'Gull Island'	ferry_line
SELECT COUNT(route_id) FROM route WHERE seasonal = 'Y'	ferry_line
SELECT COUNT(ticket_id) FROM ticket WHERE with_vehicle = 1	ferry_line
SELECT SUM(T1.price) FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id WHERE T2.departure_date LIKE '2024-07%'	ferry_line
SELECT T2.port_name FROM route AS T1 INNER JOIN port AS T2 ON T1.origin_port_id = T2.port_id WHERE T1.route_code = 'R09'	ferry_line
SELECT COUNT(T1.sailing_id) FROM sailing AS T1 INNER JOIN vessel AS T2 ON T1.vessel_id = T2.vessel_id WHERE T2.`Vessel Name` = 'MV Puffin'	ferry_line
SELECT route_code FROM route WHERE distance_nm = (SELECT MAX(distance_nm) FROM route)	ferry_line
SELECT COUNT(ticket_id) FROM ticket WHERE passenger_type = 'SNR'	ferry_line
SELECT MAX(price) FROM ticket	ferry_line
SELECT COUNT(sailing_id) FROM sailing WHERE departure_time < '08:00'	ferry_line
SELECT COUNT(T1.ticket_id) FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id WHERE T2.departure_date LIKE '2024-08%' AND T1.channel = 'web'	ferry_line
SELECT T2.`Vessel Name`, COUNT(T1.sailing_id) FROM sailing AS T1 INNER JOIN vessel AS T2 ON T1.vessel_id = T2.vessel_id GROUP BY T2.vessel_id, T2.`Vessel Name`	ferry_line
SELECT port_name FROM port WHERE opened_year < 1950	ferry_line
SELECT COUNT(DISTINCT T1.vessel_id) FROM sailing AS T1 INNER JOIN route AS T2 ON T1.route_id = T2.route_id WHERE T2.route_code = 'R05'	ferry_line
SELECT T1.route_code FROM route AS T1 INNER JOIN port AS T2 ON T1.origin_port_id = T2.port_id WHERE T2.island = 'Mainland'	ferry_line
SELECT `Vessel Name` FROM vessel WHERE `Vessel Name` LIKE 'MV %'	ferry_line
SELECT CAST(SUM(CASE WHEN status = 'DL' THEN 1 ELSE 0 END) AS REAL) * 100 / COUNT(sailing_id) FROM sailing	ferry_line
SELECT T2.`Vessel Name` FROM sailing AS T1 INNER JOIN vessel AS T2 ON T1.vessel_id = T2.vessel_id WHERE T1.status = 'DL' GROUP BY T2.vessel_id, T2.`Vessel Name` ORDER BY COUNT(T1.sailing_id) DESC LIMIT 1	ferry_line
SELECT T3.route_code, AVG(T1.price) FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id INNER JOIN route AS T3 ON T2.route_id = T3.route_id WHERE T1.passenger_type = 'RES' GROUP BY T3.route_id, T3.route_code	ferry_line
SELECT COUNT(T1.ticket_id) FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id INNER JOIN route AS T3 ON T2.route_id = T3.route_id INNER JOIN port AS T4 ON T3.origin_port_id = T4.port_id WHERE T4.port_name = 'Kestrel Quay'	ferry_line
SELECT AVG(julianday(T2.departure_date) - julianday(T1.purchase_date)) FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id WHERE T1.channel = 'web'	ferry_line
SELECT T3.`Fuel Type`, SUM(T1.price) FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id INNER JOIN vessel AS T3 ON T2.vessel_id = T3.vessel_id GROUP BY T3.`Fuel Type`	ferry_line
SELECT T3.route_code FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id INNER JOIN route AS T3 ON T2.route_id = T3.route_id WHERE T2.departure_date LIKE '2024-07%' GROUP BY T3.route_id, T3.route_code ORDER BY COUNT(T1.ticket_id) DESC LIMIT 1	ferry_line
SELECT T1.departure_date, T1.departure_time FROM sailing AS T1 INNER JOIN ticket AS T2 ON T1.sailing_id = T2.sailing_id GROUP BY T1.sailing_id, T1.departure_date, T1.departure_time HAVING COUNT(T2.ticket_id) >= 8	ferry_line
SELECT CAST(SUM(CASE WHEN T1.passenger_type = 'CHD' THEN 1 ELSE 0 END) AS REAL) / SUM(CASE WHEN T1.passenger_type = 'ADT' THEN 1 ELSE 0 END) FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id INNER JOIN route AS T3 ON T2.route_id = T3.route_id WHERE T3.seasonal = 'Y'	ferry_line
SELECT route_code FROM route WHERE route_id NOT IN (SELECT route_id FROM sailing WHERE status = 'CX')	ferry_line
SELECT T3.`Vessel Name` FROM sailing AS T1 INNER JOIN route AS T2 ON T1.route_id = T2.route_id INNER JOIN vessel AS T3 ON T1.vessel_id = T3.vessel_id WHERE T2.route_code = 'R03' INTERSECT SELECT T3.`Vessel Name` FROM sailing AS T1 INNER JOIN route AS T2 ON T1.route_id = T2.route_id INNER JOIN vessel AS T3 ON T1.vessel_id = T3.vessel_id WHERE T2.route_code = 'R11'	ferry_line
SELECT strftime('%m', departure_date) AS month, COUNT(sailing_id), SUM(CASE WHEN status = 'DL' THEN 1 ELSE 0 END) FROM sailing GROUP BY month	ferry_line
SELECT COUNT(T1.ticket_id) FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id INNER JOIN vessel AS T3 ON T2.vessel_id = T3.vessel_id WHERE T1.with_vehicle = 1 AND T3.`Fuel Type` = 'E'	ferry_line
SELECT strftime('%w', departure_date) FROM sailing WHERE status = 'CX' GROUP BY strftime('%w', departure_date) ORDER BY COUNT(sailing_id) DESC LIMIT 1	ferry_line
SELECT T2.port_name FROM route AS T1 INNER JOIN port AS T2 ON T1.destination_port_id = T2.port_id WHERE T1.seasonal = 'Y' INTERSECT SELECT T2.port_name FROM route AS T1 INNER JOIN port AS T2 ON T1.origin_port_id = T2.port_id WHERE T1.seasonal = 'N'	ferry_line
SELECT T2.`Vessel Name`, CAST(SUM(CASE WHEN T1.status = 'DL' THEN 1 ELSE 0 END) AS REAL) * 100 / COUNT(T1.sailing_id) AS share FROM sailing AS T1 INNER JOIN vessel AS T2 ON T1.vessel_id = T2.vessel_id GROUP BY T2.vessel_id, T2.`Vessel Name` ORDER BY share DESC LIMIT 1	ferry_line
SELECT T3.route_code, SUM(T1.price) / T3.distance_nm AS per_mile FROM ticket AS T1 INNER JOIN sailing AS T2 ON T1.sailing_id = T2.sailing_id INNER JOIN route AS T3 ON T2.route_id = T3.route_id GROUP BY T3.route_id, T3.route_code, T3.distance_nm ORDER BY per_mile DESC LIMIT 1	ferry_line
SELECT AVG(sold * 100.0 / capacity) FROM (SELECT COUNT(T3.ticket_id) AS sold, T2.`Passenger Capacity` AS capacity FROM sailing AS T1 INNER JOIN vessel AS T2 ON T1.vessel_id = T2.vessel_id LEFT JOIN ticket AS T3 ON T1.sailing_id = T3.sailing_id WHERE T2.`Vessel Name` = 'MV Cormorant' GROUP BY T1.sailing_id, T2.`Passenger Capacity`)	ferry_line
SELECT T3.island, COUNT(T1.sailing_id) AS delayed FROM sailing AS T1 INNER JOIN route AS T2 ON T1.route_id = T2.route_id INNER JOIN port AS T3 ON T2.origin_port_id = T3.port_id WHERE T1.delay_minutes >= 30 GROUP BY T3.island ORDER BY delayed DESC LIMIT 1	ferry_line
SELECT COUNT(sailing_id) FROM sailing WHERE status = 'DL' AND departure_date = (SELECT T1.departure_date FROM sailing AS T1 INNER JOIN ticket AS T2 ON T1.sailing_id = T2.sailing_id GROUP BY T1.departure_date ORDER BY COUNT(T2.ticket_id) DESC LIMIT 1)	ferry_line
SELECT COUNT(student_id) FROM student WHERE grade_level = 12	high_school
SELECT COUNT(student_id) FROM student WHERE lunch_status = 'F'	high_school
SELECT title FROM course WHERE department = 'Science'	high_school
SELECT first_name, last_name FROM teacher WHERE full_time = 0	high_school
SELECT COUNT(enrollment_id) FROM enrollment WHERE final_grade IS NULL	high_school
SELECT AVG(T1.score) FROM enrollment AS T1 INNER JOIN course AS T2 ON T1.course_id = T2.course_id WHERE T2.title = 'Chemistry'	high_school
SELECT T2.first_name, T2.last_name FROM course AS T1 INNER JOIN teacher AS T2 ON T1.teacher_id = T2.teacher_id WHERE T1.title = 'Physics'	high_school
SELECT title FROM course WHERE teacher_id IS NULL	high_school
SELECT COUNT(absence_id) FROM absence WHERE excused = 'N'	high_school
SELECT COUNT(student_id) FROM student WHERE email IS NULL	high_school
SELECT COUNT(course_id) FROM course WHERE credits = 0.5	high_school
SELECT COUNT(student_id) FROM student WHERE birth_date LIKE '2008%'	high_school
SELECT COUNT(absence_id) FROM absence WHERE strftime('%Y-%m', absence_date) = '2024-03'	high_school
SELECT grade_level, COUNT(student_id) FROM student GROUP BY grade_level	high_school
SELECT first_name, last_name FROM teacher ORDER BY hire_date DESC LIMIT 1	high_school
SELECT course_code FROM course WHERE department = 'Computer Science'	high_school
SELECT COUNT(DISTINCT student_id) FROM enrollment WHERE final_grade = 'F' AND term = '2023-FA'	high_school
SELECT MAX(T1.score) FROM enrollment AS T1 INNER JOIN course AS T2 ON T1.course_id = T2.course_id WHERE T2.title = 'Calculus'	high_school
SELECT COUNT(absence_id) FROM absence WHERE reason = 'Illness'	high_school
SELECT term, COUNT(enrollment_id) FROM enrollment GROUP BY term	high_school
SELECT CAST(SUM(CASE WHEN final_grade = 'A' THEN 1 ELSE 0 END) AS REAL) * 100 / COUNT(final_grade) FROM enrollment WHERE term = '2024-SP'	high_school
SELECT T2.department FROM enrollment AS T1 INNER JOIN course AS T2 ON T1.course_id = T2.course_id GROUP BY T2.department ORDER BY COUNT(T1.enrollment_id) DESC LIMIT 1	high_school
SELECT AVG(T2.score) FROM student AS T1 INNER JOIN enrollment AS T2 ON T1.student_id = T2.student_id WHERE T1.lunch_status IN ('F', 'R')	high_school
SELECT T1.first_name, T1.last_name FROM student AS T1 INNER JOIN enrollment AS T2 ON T1.student_id = T2.student_id INNER JOIN course AS T3 ON T2.course_id = T3.course_id WHERE T3.title = 'Spanish I' INTERSECT SELECT T1.first_name, T1.last_name FROM student AS T1 INNER JOIN enrollment AS T2 ON T1.student_id = T2.student_id INNER JOIN course AS T3 ON T2.course_id = T3.course_id WHERE T3.title = 'French I'	high_school
SELECT T3.first_name, T3.last_name FROM enrollment AS T1 INNER JOIN course AS T2 ON T1.course_id = T2.course_id INNER JOIN teacher AS T3 ON T2.teacher_id = T3.teacher_id GROUP BY T3.teacher_id, T3.first_name, T3.last_name ORDER BY AVG(T1.score) DESC LIMIT 1	high_school
SELECT T1.first_name, T1.last_name FROM student AS T1 INNER JOIN absence AS T2 ON T1.student_id = T2.student_id GROUP BY T1.student_id, T1.first_name, T1.last_name HAVING COUNT(T2.absence_id) > 8	high_school
SELECT COUNT(student_id) FROM student WHERE student_id NOT IN (SELECT student_id FROM absence)	high_school
SELECT title FROM course EXCEPT SELECT T2.title FROM enrollment AS T1 INNER JOIN course AS T2 ON T1.course_id = T2.course_id WHERE T1.final_grade = 'F'	high_school
SELECT strftime('%Y-%m', absence_date) FROM absence GROUP BY strftime('%Y-%m', absence_date) ORDER BY COUNT(absence_id) DESC LIMIT 1	high_school
SELECT COUNT(T1.student_id) FROM student AS T1 INNER JOIN enrollment AS T2 ON T1.student_id = T2.student_id INNER JOIN course AS T3 ON T2.course_id = T3.course_id WHERE T1.grade_level = 9 AND T3.title = 'Algebra I' AND T2.term = '2023-FA'	high_school
SELECT SUM(T2.credits) FROM enrollment AS T1 INNER JOIN course AS T2 ON T1.course_id = T2.course_id WHERE T1.student_id = 7 AND T1.final_grade <> 'F'	high_school
SELECT excused, SUM(CASE WHEN strftime('%w', absence_date) = '1' THEN 1 ELSE 0 END), SUM(CASE WHEN strftime('%w', absence_date) = '5' THEN 1 ELSE 0 END) FROM absence GROUP BY excused	high_school
SELECT T1.grade_level, CAST(SUM(CASE WHEN T2.final_grade = 'F' THEN 1 ELSE 0 END) AS REAL) * 100 / COUNT(T2.final_grade) AS share FROM student AS T1 INNER JOIN enrollment AS T2 ON T1.student_id = T2.student_id GROUP BY T1.grade_level ORDER BY share DESC LIMIT 1	high_school
SELECT AVG(score) FROM enrollment WHERE student_id IN (SELECT student_id FROM absence WHERE excused = 'N' GROUP BY student_id HAVING COUNT(absence_id) > 5)	high_school
SELECT T2.department FROM enrollment AS T1 INNER JOIN course AS T2 ON T1.course_id = T2.course_id GROUP BY T2.department ORDER BY CAST(SUM(CASE WHEN T1.final_grade = 'A' THEN 1 ELSE 0 END) AS REAL) / COUNT(T1.final_grade) DESC LIMIT 1	high_school
SELECT COUNT(*) FROM (SELECT student_id FROM enrollment GROUP BY student_id HAVING AVG(CASE WHEN term = '2024-SP' THEN score END) - AVG(CASE WHEN term = '2023-FA' THEN score END) > 5)	high_school
