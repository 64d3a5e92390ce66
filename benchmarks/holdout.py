"""Hold-out districts: an independently written generator of rosters with ground truth.

    from benchmarks.holdout import generate_holdout
    incoming, existing, truth = generate_holdout(5000, seed=1)

Written apart from `benchmarks/districts.py` and without looking at the matcher, so that the
matcher's figures on it are not figures it was tuned on. The corruption model follows the
record-linkage literature's generators (FEBRL / GeCo style: per-field, per-kind corruption with
rates) plus what school rosters actually do.

Population
    Families (one surname, 1-4 children with 1-6 years between them; 3.5% of families have twins,
    0.3% triplets; 30% of twins get very similar names: Aiden/Aidan, Ann/Anna, Ella/Emma, Daniel/
    Danielle). Birth dates span the 14 cohorts from this year's kindergarten to last year's seniors.
    Origins (first names, middle names and surnames drawn per origin, Zipf-like weights within
    own lists, Census frequencies for the US pool): US/Census 52%, Hispanic 22% (accents,
    compound first names such as "María José", double surnames "García López"), Vietnamese 4%
    (family-name-first habit, Van/Thi middle names), Chinese 4% (pinyin given names written
    "Zihan"/"Zi Han"), Korean 1.5% ("Ji-woo"), Arabic 4% (Al-/El- prefixes, Mohammed spellings),
    African 3.5% (Nigerian, Ghanaian, Somali, Ethiopian, Kenyan), South Asian 3%, Slavic 2%
    (Ivanov/Ivanova by sex). 4% of US surnames are particle or apostrophe names (de la Cruz, van der
    Berg, O'Brien, D'Souza, McDonald); 3% of children have a hyphenated two-family surname.

Who is where
    Existing = every child enrolled last year (about `size` continuing + the leavers). Leavers:
    last year's seniors and 4% of families that moved away. Newcomers: this year's kindergarten, 4%
    of families that moved in (some siblings of existing students), 1.5% of `size` namesakes of an
    existing student (same first and last name, a different birth date; a tenth of them within a
    few days), and 1% of newcomers carry a leaver's recycled student ID. 0.3% of continuing students
    appear twice in the sheet (two schools). Schools follow age (elementary/middle/high by family
    zone), so moving up a level changes school_id; 3% change school within a level.

District-level draws (per seed, so seeds differ in difficulty)
    noise intensity x0.6-1.6 on every row-level rate below; whole sheet upper-case 20%; accents
    stripped from the whole sheet 40%; names truncated to 12/15 characters 15%; student_id column
    through Excel (leading zeros lost) 30%, ssid column 20%; ssid column absent 15%; one block of
    3-12 rows with student IDs shifted by one row (a sort error) 40%; student_id filled in
    85-99% of rows, ssid 50-95%; the district's student-ID format (zero-padded 6 digits, 7 digits,
    "S"+6 digits, zero-padded 8 digits).

Row-level rates (incoming rows, times the intensity; existing records get the same model at 0.3x
with no sheet-level effects and never lose a name or birth date)
    first name: nickname 3.5% (where one exists), spelling variant 2% (Sofia/Sophia), middle
    appended 2.5%, middle name instead 1%, "Middle First" 0.5%, middle initial appended 1%,
    composite name re-spaced 20% of those (Ji-woo/Jiwoo/Ji Woo); surname: double surname cut to one
    part 15% / joiner changed 10% of those, particle and apostrophe spellings 15% of those (De La
    Cruz/Delacruz/Cruz, O'Brien/OBrien/O’Brien/O Brien), surname changed (hyphenated new name or a
    new one) 0.4%; both names: accents stripped 15%, typo 3.5% first / 3% last (keyboard neighbour
    substitution, deletion, insertion, transposition; a second typo on 25% of those), phonetic
    misspelling 1.5% (ph/f, ie/y, double letters, c/k, s/z, ll/y, v/b), OCR confusion 0.6% (rn/m,
    cl/d, l/1, O/0, e/c), truncated 0.3%, first and last swapped 1.2% (6% for East Asian names),
    all upper-case 2%, lower-case 0.5%, stray spaces 1%, first missing 0.4%, last missing 0.3%,
    whole name "Last, First" in the last-name cell 0.2%.
    birth date: missing 0.8%, day and month swapped 1.2% (when both <= 12), off by one day 1%,
    wrong year (+-1, a mistyped digit or a decade) 0.8%, month off by one 0.4%, the 1st of the
    month 0.4%, January 1st 0.3%, unrelated date 0.1%.
    IDs: digit substituted 1%, adjacent digits transposed 0.7%, digit dropped 0.4%, digit inserted
    0.2%, another student's ID 0.3%, leading zeros lost 1%; other_id on 5% of existing, kept on 40%
    of their rows and appearing on 2% of others.
    3% of rows (times the intensity) get two to three extra errors of the kinds above.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import polars as pl

THIS_YEAR = dt.date(2025, 9, 1)  # the school year the sheet is for; last year started a year before
COHORTS = 14  # this year's kindergarten to last year's seniors

# Row-level rates (see the module docstring).
NAME_RATES = {
    "nickname": 0.035, "spelling_variant": 0.02, "middle_appended": 0.025, "middle_as_first": 0.01,
    "middle_first": 0.005, "middle_initial": 0.01, "composite_respaced": 0.20,
    "double_surname_one_part": 0.15, "double_surname_joiner": 0.10, "particle_variant": 0.15,
    "surname_changed": 0.004, "accents_stripped": 0.15, "typo_first": 0.035, "typo_last": 0.03,
    "phonetic": 0.015, "ocr": 0.006, "truncated": 0.003, "first_last_swapped": 0.012,
    "upper": 0.02, "lower": 0.005, "stray_spaces": 0.01, "first_missing": 0.004,
    "last_missing": 0.003, "full_name_in_last": 0.002,
}
DOB_RATES = {
    "missing": 0.008, "day_month_swapped": 0.012, "off_by_one_day": 0.01, "wrong_year": 0.008,
    "month_off": 0.004, "first_of_month": 0.004, "jan_first": 0.003, "unrelated": 0.001,
}
ID_RATES = {
    "digit_substituted": 0.01, "digits_transposed": 0.007, "digit_dropped": 0.004,
    "digit_inserted": 0.002, "other_students": 0.003, "leading_zeros_lost": 0.01,
}
HARD_ROW_RATE = 0.03
EXISTING_SCALE = 0.3

# ---------------------------------------------------------------------------------------------
# Name pools (own lists, in rough order of frequency)

US_MALE = """Liam Noah Mason Jacob William Ethan Michael Alexander James Daniel Elijah Benjamin Logan
Aiden Jayden Matthew Jackson David Lucas Joseph Anthony Andrew Samuel Gabriel Joshua John Carter Luke
Dylan Christopher Isaac Oliver Henry Sebastian Caleb Owen Ryan Nathan Wyatt Hunter Jack Christian
Landon Jonathan Levi Jaxon Julian Isaiah Eli Aaron Charles Connor Cameron Thomas Jordan Jeremiah
Nicholas Evan Adrian Gavin Robert Brayden Grayson Josiah Colton Austin Angel Jace Dominic Kevin
Brandon Tyler Parker Ayden Jason Ian Chase Adam Hudson Nolan Zachary Easton Blake Jaxson Cooper
Lincoln Xavier Bentley Kayden Carson Brody Asher Nathaniel Ryder Justin Leo Camden Tristan Damian
Elias Vincent Jase Maxwell Miles Micah Sawyer Max Alex Brady Kaden Bryson Kaleb Kingston Jaden Jayce
Bryce Declan Theodore Ezra Silas Rowan Beau Emmett Jasper Finn Malachi Zion Amir Kai Ronan Everett
Steven Timothy Richard Kenneth Gregory Patrick Sean Marcus Derek Travis Cody Trevor Shane Dakota""".split()
US_FEMALE = """Emma Olivia Sophia Isabella Ava Mia Emily Abigail Madison Charlotte Harper Sofia Avery
Elizabeth Amelia Evelyn Ella Chloe Victoria Aubrey Grace Zoey Natalie Addison Lillian Brooklyn Lily
Hannah Layla Scarlett Aria Zoe Samantha Anna Leah Audrey Ariana Allison Savannah Arianna Camila
Penelope Gabriella Claire Aaliyah Sadie Riley Skylar Nora Sarah Hailey Kaylee Paisley Kennedy Ellie
Peyton Annabelle Caroline Madelyn Serenity Aubree Lucy Alexa Alexis Nevaeh Stella Violet Genesis
Mackenzie Bella Autumn Mila Kylie Maya Piper Alyssa Taylor Eleanor Melanie Naomi Faith Eva Katherine
Lydia Brianna Julia Ashley Khloe Madeline Ruby Sophie Alexandra London Lauren Gianna Isabelle Alice
Vivian Hadley Jasmine Morgan Kayla Cora Bailey Kimberly Reagan Hazel Clara Sydney Trinity Natalia
Valentina Rylee Jocelyn Maria Aurora Eliana Brielle Liliana Mary Kaitlyn Jayla Destiny Makayla
Jessica Jennifer Megan Rebecca Danielle Ann Molly Delaney Juliana Josephine Adeline Quinn Reese""".split()
HISPANIC_MALE = """José Juan Luis Carlos Jesús Miguel Ángel Diego Alejandro Santiago Mateo Sebastián
Daniel David Jorge Francisco Javier Fernando Ricardo Eduardo Antonio Manuel Rafael Emiliano Leonardo
Adrián Iker Gael Marco Marcos Andrés Héctor Raúl Óscar Sergio Pablo Emilio Joaquín Julián Iván
Josué Adán Ismael Cristian Esteban Ignacio Rodrigo Guadalupe Axel Brandon Kevin""".split() + [
    "Juan Carlos", "José Luis", "Luis Ángel", "Juan Pablo", "Miguel Ángel", "José Antonio"]
HISPANIC_FEMALE = """María Sofía Valentina Camila Ximena Daniela Valeria Fernanda Isabella Jimena
Guadalupe Andrea Alejandra Lucía Paola Natalia Mariana Gabriela Victoria Regina Renata Ana Elena
Carolina Yesenia Maribel Esmeralda Leslie Jacqueline Karla Diana Itzel Yaretzi Abril Dulce Araceli
Brenda Marisol Adriana Luz Rocío Nayeli Melany Genesis Estrella Alondra""".split() + [
    "María José", "Ana Sofía", "María Fernanda", "Ana Lucía", "María Guadalupe"]
HISPANIC_SURNAMES = """García Rodríguez Martínez Hernández López González Pérez Sánchez Ramírez Torres
Flores Rivera Gómez Díaz Reyes Morales Cruz Ortiz Gutiérrez Chávez Ramos Ruiz Vargas Castillo Jiménez
Moreno Romero Herrera Medina Aguilar Mendoza Vásquez Castro Delgado Peña Núñez Muñoz Ibáñez Guerrero
Salazar Rojas Contreras Luna Ortega Estrada Figueroa Cervantes Domínguez Vega Campos Sandoval
Ayala Soto Ríos Acosta Valencia Navarro Cabrera Fuentes Zamora Escobar Orozco Velázquez Ochoa
Quintero Arellano Espinoza Carrillo Serrano Bautista Zúñiga Villanueva Cárdenas Solís Beltrán""".split() + [
    "de la Cruz", "De León", "del Río", "de los Santos", "De Jesús", "de la Rosa", "de la Garza"]
VIET_SURNAMES = "Nguyen Tran Le Pham Hoang Huynh Phan Vu Vo Dang Bui Do Ho Ngo Duong Ly Truong Dinh".split()
VIET_MALE = "Minh Tuan Duc Khanh Quang Bao Hieu Long Nam Hai Huy Khoa Phuc Thanh Trung Vinh Dat Kiet".split()
VIET_FEMALE = "Anh Linh Huong Phuong Thao Trang Mai Lan Ngoc Hoa Nhung Vy Tien Uyen Hanh Quynh Nhi Thu".split()
VIET_MIDDLE = {"M": "Van Duc Minh Quoc Huu Thanh".split(), "F": "Thi Ngoc Thu Kim Bao Thanh".split()}
CHINESE_SURNAMES = """Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo Lin He Gao Liang
Wong Chan Leung Cheung Lau Ng Lam Ho Tang Yip""".split()
CHINESE_MALE = "Wei Hao Jie Lei Ming Jun Haoran Zihan Yuxuan Zixuan Junjie Yichen Tianyu Bowen Kai Chen".split()
CHINESE_FEMALE = "Jing Xin Yu Mei Yan Hui Yiting Zihan Xinyi Yuxin Shuang Ling Xiaoyu Ruoxi Jiayi Wen".split()
KOREAN_SURNAMES = "Kim Lee Park Choi Jung Kang Cho Yoon Jang Lim Han Shin".split()
KOREAN_MALE = "Min-jun Seo-jun Ji-ho Do-yun Ha-jun Joon-young Hyun-woo Sung-min Jae-won Dong-hyun".split()
KOREAN_FEMALE = "Ji-woo Seo-yeon Ha-eun Min-seo Ji-min Soo-ah Ye-jin Eun-ji Hye-jin Yu-na".split()
ARABIC_SURNAMES = """Al-Hassan Abdullah Haddad Khalil Mansour Saleh Hussein Hussain Nasser Al-Rashid
El-Amin Ibrahim Mahmoud Abdelrahman Al-Sayed Khoury Hamdan Darwish Aziz Qureshi Al-Masri Othman Yousef
Suleiman Bakr""".split()
ARABIC_MALE = """Mohammed Muhammad Mohamed Mohammad Ahmed Ahmad Ali Omar Yusuf Youssef Ibrahim Hassan
Hamza Khalid Mustafa Abdullah Karim Tariq Bilal Zaid Adam Yahya Amir Rayan""".split()
ARABIC_FEMALE = """Fatima Aisha Maryam Mariam Zainab Khadija Layla Noor Hana Amira Sara Yasmin Leila
Rania Salma Aya Huda Malak Jana Lina Reem""".split()
AFRICAN_SURNAMES = """Okafor Adeyemi Obi Eze Nwosu Adebayo Okonkwo Oyelaran Mensah Owusu Boateng Asante
Osei Abdi Farah Warsame Osman Hassan Mohamud Tesfaye Bekele Haile Abebe Desta Mwangi Otieno Kamau
Njoroge Diallo Traoré N'Diaye Koné""".split()
AFRICAN_MALE = """Chukwuemeka Oluwaseun Chidi Emeka Tunde Kwame Kofi Yaw Kwabena Abdi Abdirahman Mohamed
Yonas Dawit Kibet Otieno Mamadou Ousmane Ikenna Obinna Babajide""".split()
AFRICAN_FEMALE = """Ngozi Chiamaka Adaeze Funmilayo Ama Akosua Abena Efua Hodan Fadumo Asha Ifrah Meron
Selam Hiwot Wanjiru Njeri Achieng Fatoumata Aminata Chinwe Temitope""".split()
SOUTH_ASIAN_SURNAMES = "Patel Shah Singh Kumar Sharma Gupta Reddy Desai Mehta Iyer Rao Chaudhary Joshi Nair".split()
SOUTH_ASIAN_MALE = "Aarav Arjun Rohan Vikram Ishaan Vivaan Aditya Krishna Rahul Dev Sai Arnav Kabir".split()
SOUTH_ASIAN_FEMALE = "Priya Ananya Aditi Saanvi Diya Isha Kavya Anika Riya Meera Aanya Shreya".split()
SLAVIC_SURNAMES = """Ivanov Petrov Smirnov Kuznetsov Popov Sokolov Volkov Kowalski Nowak Wiśniewski Novak Horvat
Kovalenko Shevchenko""".split()
SLAVIC_MALE = "Dmitri Aleksandr Ivan Nikolai Mikhail Sergei Maksim Artem Jakub Mateusz Luka Bogdan".split()
SLAVIC_FEMALE = "Anastasia Ekaterina Sofiya Daria Polina Olga Zofia Natalia Ivana Milena Viktoria".split()
US_PARTICLE_SURNAMES = """O'Brien O'Connor O'Neill O'Donnell O'Hara O'Sullivan D'Souza D'Angelo McDonald
McCarthy McKenzie MacDonald MacKenzie McLaughlin""".split() + [
    "van der Berg", "van Dijk", "Van Buren", "de Vries", "De Luca", "Di Stefano", "Le Blanc", "St. Pierre",
    "Dos Santos", "da Silva", "von Essen", "La Rue", "Van Dyke"]

# name -> ways it is shortened or known at school
NICKNAMES = {
    "William": ["Will", "Billy", "Liam"], "Robert": ["Rob", "Bobby", "Robbie"], "Richard": ["Rick", "Richie"],
    "James": ["Jim", "Jimmy", "Jamie"], "Joseph": ["Joe", "Joey"], "Michael": ["Mike", "Mikey"],
    "Christopher": ["Chris"], "Nicholas": ["Nick", "Nico"], "Alexander": ["Alex", "Xander"],
    "Alexandra": ["Alex", "Lexi", "Sasha"], "Elizabeth": ["Liz", "Beth", "Eliza", "Lizzie"],
    "Katherine": ["Kate", "Katie", "Kat"], "Jennifer": ["Jen", "Jenny"], "Daniel": ["Dan", "Danny"],
    "Matthew": ["Matt"], "Benjamin": ["Ben", "Benny"], "Samuel": ["Sam", "Sammy"], "Samantha": ["Sam", "Sammie"],
    "Anthony": ["Tony"], "Andrew": ["Andy", "Drew"], "Jonathan": ["Jon", "Johnny"], "Zachary": ["Zach", "Zack"],
    "Joshua": ["Josh"], "Jacob": ["Jake"], "Thomas": ["Tom", "Tommy"], "Theodore": ["Theo", "Teddy"],
    "Abigail": ["Abby"], "Isabella": ["Bella", "Izzy"], "Gabriella": ["Gabby", "Ella"], "Olivia": ["Liv"],
    "Victoria": ["Tori", "Vicky"], "Madison": ["Maddie"], "Madeline": ["Maddie"], "Natalie": ["Nat"],
    "Jessica": ["Jess", "Jessie"], "Rebecca": ["Becky", "Becca"], "Charles": ["Charlie"],
    "Charlotte": ["Charlie", "Lottie"], "Henry": ["Hank", "Harry"], "Timothy": ["Tim"], "Kenneth": ["Ken"],
    "Steven": ["Steve"], "Gregory": ["Greg"], "Patrick": ["Pat"], "Evelyn": ["Evie"], "Eleanor": ["Ellie", "Nora"],
    "Penelope": ["Penny"], "Sophia": ["Sophie"], "Emily": ["Emmy"], "Allison": ["Ally"],
    "Jacqueline": ["Jackie"], "Cameron": ["Cam"], "Maxwell": ["Max"], "Nathaniel": ["Nate", "Nathan"],
    "Nathan": ["Nate"], "Dominic": ["Dom"], "Vincent": ["Vince", "Vinny"], "Josephine": ["Josie"],
    "Kimberly": ["Kim"], "Gabriel": ["Gabe"], "Mackenzie": ["Kenzie"], "Juliana": ["Julie"],
    "José": ["Pepe"], "Francisco": ["Paco", "Pancho"], "Guadalupe": ["Lupe"], "Jesús": ["Chuy"],
    "Ignacio": ["Nacho"], "Alejandro": ["Alex"], "Fernanda": ["Fer"], "Alejandra": ["Ale"],
    "Mohammed": ["Mo"], "Muhammad": ["Mo"], "Mohamed": ["Mo"], "Abdirahman": ["Abdi"],
    "Oluwaseun": ["Seun"], "Chukwuemeka": ["Emeka"], "Babajide": ["Jide"], "Temitope": ["Tope"],
    "Anastasia": ["Nastya", "Ana"], "Dmitri": ["Dima"], "Aleksandr": ["Sasha", "Alex"], "Ekaterina": ["Katya"],
    "Mikhail": ["Misha"], "Nikolai": ["Kolya"], "Vikram": ["Vik"], "Krishna": ["Krish"],
}
# interchangeable spellings of one name
SPELLING_GROUPS = [
    ("Aiden", "Aidan", "Ayden", "Aden"), ("Jayden", "Jaden", "Jaiden", "Jaydon"), ("Brayden", "Braden", "Braydon"),
    ("Kaitlyn", "Caitlin", "Katelyn", "Kaitlin"), ("Madison", "Madisyn", "Maddison"), ("Sophia", "Sofia"),
    ("Isabella", "Isabela", "Izabella"), ("Zoey", "Zoe", "Zoie"), ("Hailey", "Haley", "Haylee", "Hayley"),
    ("Mackenzie", "McKenzie", "Makenzie"), ("Jaxon", "Jaxson", "Jackson"), ("Kaylee", "Kayleigh", "Kailey"),
    ("Ann", "Anne"), ("Sara", "Sarah"), ("Jon", "John"), ("Steven", "Stephen"), ("Brian", "Bryan"),
    ("Makayla", "Michaela", "Mikayla"), ("Camila", "Camilla"), ("Elliot", "Elliott"), ("Kristen", "Kristin"),
    ("Mohammed", "Muhammad", "Mohamed", "Mohammad"), ("Ahmed", "Ahmad"), ("Yusuf", "Youssef", "Yousef"),
    ("Maryam", "Mariam", "Miriam"), ("Aisha", "Ayesha", "Aysha"), ("Fatima", "Fatimah"), ("Zainab", "Zaynab"),
    ("Hussein", "Hussain"), ("Dmitri", "Dmitriy", "Dmitry"), ("Aleksandr", "Alexander"), ("Sofiya", "Sofia"),
    ("Natalia", "Natalya"), ("Yesenia", "Jesenia"), ("Ximena", "Jimena"), ("Leslie", "Lesly"),
    ("Jocelyn", "Joselyn"), ("Brianna", "Breanna"), ("Geoffrey", "Jeffrey"), ("Aaliyah", "Aliyah"),
    ("Layla", "Laila", "Leila"), ("Rayan", "Ryan"), ("Huong", "Hương"), ("Nevaeh", "Neveah"),
]
SPELLING_VARIANTS = {name: [n for n in group if n != name] for group in SPELLING_GROUPS for name in group}
# very similar names twins get (name, sex, name, sex)
TWIN_PAIRS = [
    ("Aiden", "M", "Aidan", "M"), ("Ann", "F", "Anna", "F"), ("Ella", "F", "Emma", "F"),
    ("Mason", "M", "Madison", "F"), ("Jayden", "M", "Kayden", "M"), ("Daniel", "M", "Danielle", "F"),
    ("Gabriel", "M", "Gabriella", "F"), ("Isaac", "M", "Isaiah", "M"), ("Mia", "F", "Maya", "F"),
    ("Eli", "M", "Ella", "F"), ("Noah", "M", "Nora", "F"), ("Brayden", "M", "Brady", "M"),
    ("Kaitlyn", "F", "Kaylee", "F"), ("Julian", "M", "Juliana", "F"), ("Alexander", "M", "Alexandra", "F"),
    ("Marco", "M", "Marcos", "M"), ("José", "M", "Josué", "M"), ("Luis", "M", "Luisa", "F"),
    ("Hassan", "M", "Hussein", "M"), ("Fatima", "F", "Fatma", "F"), ("Tyler", "M", "Taylor", "F"),
    ("Lily", "F", "Lila", "F"), ("Adam", "M", "Adan", "M"), ("Hannah", "F", "Anna", "F"),
    ("Kristen", "F", "Kirsten", "F"), ("Ryan", "M", "Ryann", "F"), ("Minh", "M", "Linh", "F"),
]
ORIGINS = [("us", 0.52), ("hispanic", 0.22), ("vietnamese", 0.04), ("chinese", 0.04), ("korean", 0.015),
           ("arabic", 0.04), ("african", 0.035), ("south_asian", 0.03), ("slavic", 0.02)]
EAST_ASIAN = {"vietnamese", "chinese", "korean"}

_CENSUS_FIXED = {
    "OBRIEN": "O'Brien", "OCONNOR": "O'Connor", "ONEIL": "O'Neil", "ONEILL": "O'Neill", "ODONNELL": "O'Donnell",
    "OCONNELL": "O'Connell", "OHARA": "O'Hara", "OKEEFE": "O'Keefe", "OROURKE": "O'Rourke", "ONEAL": "O'Neal",
    "OLEARY": "O'Leary", "OSHEA": "O'Shea", "OMALLEY": "O'Malley", "OBRYANT": "O'Bryant", "OSULLIVAN": "O'Sullivan",
    "DELEON": "De Leon", "DELACRUZ": "De La Cruz", "DEJESUS": "De Jesus", "DELAROSA": "De La Rosa",
    "DELAGARZA": "De La Garza", "DELOSSANTOS": "De Los Santos", "VANDYKE": "Van Dyke", "VANBUREN": "Van Buren",
}


@dataclass
class Pool:
    """Names with cumulative weights, for random.choices."""

    names: list[str]
    cum: list[float]

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.names, cum_weights=self.cum)[0]


def _pool(names: list[str], weights: list[float] | None = None) -> Pool:
    weights = weights or [1.0 / (rank + 3) for rank in range(len(names))]
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    return Pool(names, cum)


def _census_case(upper: str) -> str:
    if upper in _CENSUS_FIXED:
        return _CENSUS_FIXED[upper]
    if upper.startswith("MC") and len(upper) > 3:
        return "Mc" + upper[2:].capitalize()
    return upper.capitalize()


def _read_census(name: str, tail: int, tail_weight: float) -> tuple[list[str], list[float]]:
    names, weights = [], []
    text = resources.files("names").joinpath(name).read_text()
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        freq = float(parts[1])
        if freq <= 0:
            if tail <= 0:
                break
            tail -= 1
            freq = tail_weight
        names.append(_census_case(parts[0]))
        weights.append(freq)
    return names, weights


@lru_cache(maxsize=1)
def _pools() -> dict[str, Pool]:
    last, last_w = _read_census("dist.all.last", tail=30000, tail_weight=0.0003)
    male, male_w = _read_census("dist.male.first", tail=0, tail_weight=0)
    female, female_w = _read_census("dist.female.first", tail=0, tail_weight=0)
    return {
        "us_last": _pool(last, last_w), "census_male": _pool(male, male_w), "census_female": _pool(female, female_w),
        "us_male": _pool(US_MALE), "us_female": _pool(US_FEMALE), "us_particle": _pool(US_PARTICLE_SURNAMES),
        "hispanic_last": _pool(HISPANIC_SURNAMES), "hispanic_male": _pool(HISPANIC_MALE),
        "hispanic_female": _pool(HISPANIC_FEMALE),
        "vietnamese_last": _pool(VIET_SURNAMES, [38, 11, 9, 7, 5, 5, 4, 4, 3, 2, 2, 1.5, 1.5, 1.3, 1, 1, 1, 1]),
        "vietnamese_male": _pool(VIET_MALE), "vietnamese_female": _pool(VIET_FEMALE),
        "chinese_last": _pool(CHINESE_SURNAMES), "chinese_male": _pool(CHINESE_MALE),
        "chinese_female": _pool(CHINESE_FEMALE), "korean_last": _pool(KOREAN_SURNAMES, [21, 15, 8, 5, 5] + [2] * 7),
        "korean_male": _pool(KOREAN_MALE), "korean_female": _pool(KOREAN_FEMALE),
        "arabic_last": _pool(ARABIC_SURNAMES), "arabic_male": _pool(ARABIC_MALE), "arabic_female": _pool(ARABIC_FEMALE),
        "african_last": _pool(AFRICAN_SURNAMES), "african_male": _pool(AFRICAN_MALE),
        "african_female": _pool(AFRICAN_FEMALE), "south_asian_last": _pool(SOUTH_ASIAN_SURNAMES),
        "south_asian_male": _pool(SOUTH_ASIAN_MALE), "south_asian_female": _pool(SOUTH_ASIAN_FEMALE),
        "slavic_last": _pool(SLAVIC_SURNAMES), "slavic_male": _pool(SLAVIC_MALE), "slavic_female": _pool(SLAVIC_FEMALE),
        "origin": _pool([o for o, _ in ORIGINS], [w for _, w in ORIGINS]),
    }


# ---------------------------------------------------------------------------------------------
# Population


@dataclass
class Person:
    key: int
    first: str
    middle: str | None
    last: str
    dob: dt.date
    sex: str
    origin: str
    zone: int
    student_id: str | None = None
    ssid: str | None = None
    other_id: str | None = None
    role: str = "continuing"  # continuing | leaver | newcomer
    extra: dict = field(default_factory=dict)


def _family_surname(rng: random.Random, origin: str, pools: dict[str, Pool]) -> str:
    if origin == "us":
        if rng.random() < 0.04:
            return pools["us_particle"].draw(rng)
        return pools["us_last"].draw(rng)
    last = pools[f"{origin}_last"].draw(rng)
    if origin == "hispanic" and rng.random() < 0.35:
        second = pools["hispanic_last"].draw(rng)
        if second != last:
            last = f"{last}{'-' if rng.random() < 0.2 else ' '}{second}"
    return last


def _slavic_form(last: str, sex: str) -> str:
    if sex != "F":
        return last
    if last.endswith(("ov", "ev", "in")):
        return last + "a"
    if last.endswith("ski"):
        return last[:-1] + "a"
    if last.endswith("ko"):
        return last
    return last


def _first_name(rng: random.Random, origin: str, sex: str, pools: dict[str, Pool]) -> str:
    key = "male" if sex == "M" else "female"
    if origin == "us":
        return (pools[f"us_{key}"] if rng.random() < 0.6 else pools[f"census_{key}"]).draw(rng)
    # children of immigrant families often get a US first name
    if rng.random() < {"hispanic": 0.4, "arabic": 0.1, "slavic": 0.3}.get(origin, 0.2):
        return pools[f"us_{key}"].draw(rng)
    return pools[f"{origin}_{key}"].draw(rng)


def _middle_name(rng: random.Random, origin: str, sex: str, first: str, pools: dict[str, Pool]) -> str | None:
    if origin == "vietnamese":
        return rng.choice(VIET_MIDDLE[sex])
    share = {"us": 0.75, "hispanic": 0.5, "arabic": 0.4, "african": 0.5, "south_asian": 0.3, "slavic": 0.3,
             "chinese": 0.1, "korean": 0.0}[origin]
    if rng.random() >= share or " " in first:
        return None
    for _ in range(5):
        middle = _first_name(rng, origin, sex, pools)
        if middle != first and " " not in middle:
            return middle
    return None


def _population(rng: random.Random, size: int, pools: dict[str, Pool], n_schools: int) -> list[Person]:
    """Families until `size` children continue from last year to this year."""
    youngest = dt.date(THIS_YEAR.year - 5, 9, 1)  # born before this: old enough for kindergarten
    oldest = dt.date(THIS_YEAR.year - 5 - COHORTS, 9, 2)
    span = (youngest - oldest).days
    people: list[Person] = []
    continuing = 0
    next_key = 0
    while continuing < size:
        origin = pools["origin"].draw(rng)
        surname = _family_surname(rng, origin, pools)
        zone = rng.randrange(1 << 30)
        family_move = rng.random()
        role = "leaver" if family_move < 0.04 else "newcomer" if family_move < 0.08 else "continuing"
        n_kids = rng.choices([1, 2, 3, 4], [0.55, 0.30, 0.11, 0.04])[0]
        multiple = rng.random()
        births = 3 if multiple < 0.003 else 2 if multiple < 0.038 else 1
        base = oldest + dt.timedelta(days=rng.randrange(span))
        dobs: list[dt.date] = []
        day = base
        for _ in range(n_kids):
            dobs.append(day)
            day = day + dt.timedelta(days=rng.randrange(365, 6 * 365))
        twin_at = rng.randrange(n_kids)
        dobs = dobs[:twin_at + 1] + [dobs[twin_at]] * (births - 1) + dobs[twin_at + 1:]
        hyphenated = rng.random() < 0.03
        if hyphenated:
            other = pools["us_last"].draw(rng) if origin != "us" else pools["hispanic_last"].draw(rng)
            surname = f"{surname.split(' ')[0]}-{other}" if origin == "hispanic" else f"{surname}-{other}"
        used: set[str] = set()
        similar_twins = births > 1 and rng.random() < 0.30
        pair = rng.choice(TWIN_PAIRS)
        for index, dob in enumerate(dobs):
            if dob < oldest or dob >= youngest:
                continue
            sex = rng.choice("MF")
            twin_slot = index - twin_at
            if similar_twins and twin_slot in (0, 1):
                first, sex = (pair[0], pair[1]) if twin_slot == 0 else (pair[2], pair[3])
            else:
                first = _first_name(rng, origin, sex, pools)
                for _ in range(10):
                    if first not in used:
                        break
                    first = _first_name(rng, origin, sex, pools)
            used.add(first)
            last = _slavic_form(surname, sex) if origin == "slavic" else surname
            person = Person(next_key, first, _middle_name(rng, origin, sex, first, pools), last, dob, sex, origin,
                            zone, role=role)
            next_key += 1
            # last year's seniors graduated; this year's kindergarten is new
            age_last_year = _age(dob, dt.date(THIS_YEAR.year - 1, 9, 1))
            if age_last_year >= 5 + 12:  # grade 12 last year
                person.role = "leaver"
            elif _age(dob, THIS_YEAR) == 5:
                person.role = "newcomer"
            people.append(person)
            continuing += person.role == "continuing"
    return people


def _age(dob: dt.date, on: dt.date) -> int:
    return on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))


def _school(person: Person, on: dt.date, n_schools: int) -> int:
    """Elementary, middle or high school by age; the family's zone picks which one."""
    grade = _age(person.dob, on) - 5
    n_high = max(1, n_schools // 5)
    n_middle = max(1, n_schools // 5)
    n_elementary = max(1, n_schools - n_high - n_middle)
    if grade <= 5:
        return 1 + person.zone % n_elementary
    if grade <= 8:
        return 1 + n_elementary + person.zone % n_middle
    return 1 + n_elementary + n_middle + person.zone % n_high


# ---------------------------------------------------------------------------------------------
# Corruption


KEYBOARD_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def _keyboard_neighbours() -> dict[str, str]:
    neighbours: dict[str, str] = {}
    for r, row in enumerate(KEYBOARD_ROWS):
        for c, ch in enumerate(row):
            near = []
            for dr in (-1, 0, 1):
                rr = r + dr
                if 0 <= rr < len(KEYBOARD_ROWS):
                    for dc in (-1, 0, 1):
                        cc = c + dc
                        if (dr or dc) and 0 <= cc < len(KEYBOARD_ROWS[rr]):
                            near.append(KEYBOARD_ROWS[rr][cc])
            neighbours[ch] = "".join(near)
    return neighbours


KEYBOARD = _keyboard_neighbours()
DIGIT_NEIGHBOURS = {"0": "9", "1": "24", "2": "13", "3": "24", "4": "35", "5": "46", "6": "57", "7": "68", "8": "79",
                    "9": "80"}
OCR_CONFUSIONS = [("rn", "m"), ("m", "rn"), ("cl", "d"), ("d", "cl"), ("l", "1"), ("I", "l"), ("l", "I"),
                  ("O", "0"), ("o", "0"), ("e", "c"), ("c", "e"), ("h", "b"), ("u", "v"), ("vv", "w"),
                  ("w", "vv"), ("S", "5"), ("B", "8"), ("i", "l"), ("n", "h"), ("a", "o"), ("g", "q")]
PHONETIC = [("ph", "f"), ("f", "ph"), ("ie", "y"), ("y", "ie"), ("ey", "y"), ("y", "ey"), ("ck", "k"), ("c", "k"),
            ("k", "c"), ("s", "z"), ("z", "s"), ("i", "y"), ("y", "i"), ("th", "t"), ("ou", "u"), ("ei", "ie"),
            ("ie", "ei"), ("ee", "ea"), ("ah", "a"), ("ch", "sh"), ("sh", "ch"), ("v", "b"), ("b", "v"),
            ("ll", "y"), ("qu", "k"), ("x", "ks"), ("an", "en"), ("er", "ar"), ("j", "h"), ("gh", "g")]


def _match_case(new: str, old: str) -> str:
    return new.upper() if old.isupper() else new


def _typo(word: str, rng: random.Random) -> str:
    """One keyboard slip: a neighbour key, a dropped, doubled or extra letter, two letters swapped."""
    letters = [i for i, ch in enumerate(word) if ch.isalpha()]
    if len(letters) < 2:
        return word
    i = rng.choice(letters)
    ch = word[i]
    kind = rng.choices(["substitute", "delete", "insert", "transpose"], [0.35, 0.25, 0.2, 0.2])[0]
    if kind == "substitute" and ch.lower() in KEYBOARD:
        return word[:i] + _match_case(rng.choice(KEYBOARD[ch.lower()]), ch) + word[i + 1:]
    if kind == "delete" or ch.lower() not in KEYBOARD:
        return word[:i] + word[i + 1:]
    if kind == "insert":
        extra = rng.choice([ch.lower(), rng.choice(KEYBOARD[ch.lower()])])
        return word[:i + 1] + _match_case(extra, ch) + word[i + 1:]
    j = i + 1 if i + 1 < len(word) and word[i + 1].isalpha() else i - 1
    a, b = sorted((i, j))
    return word[:a] + word[b] + word[a] + word[b + 1:]


def _replace_one(word: str, table: list[tuple[str, str]], rng: random.Random) -> str:
    lower = word.lower()
    options = [(pos, old, new) for old, new in table
               for pos in range(len(lower)) if lower.startswith(old.lower(), pos)]
    if not options:
        return word
    pos, old, new = rng.choice(options)
    original = word[pos:pos + len(old)]
    new = new.upper() if original.isupper() and len(original) > 1 else (
        new[0].upper() + new[1:] if original[:1].isupper() and new else new)
    return word[:pos] + new + word[pos + len(old):]


def _phonetic(word: str, rng: random.Random) -> str:
    """A spelling by ear: ph/f, ie/y, c/k..., or a letter doubled or undoubled."""
    doubles = [i for i in range(len(word) - 1) if word[i].isalpha() and word[i].lower() == word[i + 1].lower()]
    if doubles and rng.random() < 0.4:
        i = rng.choice(doubles)
        return word[:i] + word[i + 1:]
    if rng.random() < 0.2:
        consonants = [i for i, ch in enumerate(word) if i > 0 and ch.lower() in "lnmrtsp"]
        if consonants:
            i = rng.choice(consonants)
            return word[:i + 1] + word[i] + word[i + 1:]
    return _replace_one(word, PHONETIC, rng)


def _ocr(word: str, rng: random.Random) -> str:
    return _replace_one(word, OCR_CONFUSIONS, rng)


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _respace(name: str, rng: random.Random) -> str:
    """Ji-woo / Jiwoo / Ji Woo / Ji-Woo; María José / Maria-Jose / María."""
    parts = name.replace("-", " ").split()
    if len(parts) < 2:
        return name
    kind = rng.choice(["joined", "space", "hyphen", "first_part"])
    if kind == "joined":
        return parts[0] + "".join(p.lower() for p in parts[1:])
    if kind == "first_part":
        return parts[0]
    sep = " " if kind == "space" else "-"
    return sep.join(p[:1].upper() + p[1:] for p in parts)


def _surname_variant(last: str, rng: random.Random, rates: dict[str, float]) -> str:
    """How double surnames, particles and apostrophes are written elsewhere."""
    particles = ("de ", "del ", "van ", "von ", "da ", "di ", "le ", "la ", "dos ", "st. ", "ter ", "al-", "el-")
    lower = last.lower()
    if lower.startswith(particles) or "'" in last or lower.startswith("mc") or lower.startswith("mac"):
        if rng.random() < rates["particle_variant"]:
            kind = rng.choice(["joined", "case", "core", "apostrophe"])
            if "'" in last:
                return rng.choice([last.replace("'", ""), last.replace("'", " "), last.replace("'", "’"),
                                   last.replace("'", "`")])
            if kind == "joined":
                return last.replace(" ", "").replace("-", "").replace(".", "").capitalize()
            if kind == "case" and lower.startswith(("mc", "mac")):
                return last.capitalize()
            if kind == "case":
                return " ".join(p.capitalize() for p in last.split(" ")) if last[0].islower() else (
                    last[:1].lower() + last[1:])
            if kind == "core" and (" " in last or "-" in last):
                return last.replace("-", " ").split(" ")[-1]
            return last.replace("-", " ") if "-" in last else last.replace(" ", "-", 1)
        return last
    if (" " in last or "-" in last) and rng.random() < rates["double_surname_one_part"]:
        parts = last.replace("-", " ").split(" ")
        return parts[0] if rng.random() < 0.7 else parts[-1]
    if (" " in last or "-" in last) and rng.random() < rates["double_surname_joiner"]:
        return last.replace("-", "\0").replace(" ", "-").replace("\0", " ")
    return last


@dataclass
class Sheet:
    """What a whole sheet does to every row (see the module docstring)."""

    intensity: float = 1.0
    upper: bool = False
    ascii_only: bool = False
    truncate: bool = False
    excel_student_id: bool = False
    excel_ssid: bool = False
    no_ssid: bool = False
    student_id_coverage: float = 1.0
    ssid_coverage: float = 1.0


def _names(person: Person, rng: random.Random, rates: dict[str, float], sheet: Sheet | None,
           pools: dict[str, Pool], allow_missing: bool) -> tuple[str | None, str | None]:
    """The first and last name as one record writes them."""
    first, last, middle = person.first, person.last, person.middle
    r = rng.random()
    if first in NICKNAMES and r < rates["nickname"]:
        first = rng.choice(NICKNAMES[first])
    elif first in SPELLING_VARIANTS and r < rates["nickname"] + rates["spelling_variant"]:
        first = rng.choice(SPELLING_VARIANTS[first])
    if middle:
        r = rng.random()
        cut = rates["middle_appended"]
        if r < cut:
            first = f"{first} {middle}"
        elif r < (cut := cut + rates["middle_as_first"]):
            first = middle
        elif r < (cut := cut + rates["middle_first"]):
            first = f"{middle} {first}"
        elif r < cut + rates["middle_initial"]:
            first = f"{first} {middle[0]}{rng.choice(['', '.'])}"
    if (" " in person.first or "-" in person.first) and rng.random() < rates["composite_respaced"]:
        first = _respace(first, rng)
    last = _surname_variant(last, rng, rates)
    if rng.random() < rates["surname_changed"]:
        new = pools["us_last"].draw(rng)
        last = rng.choice([f"{last}-{new}", f"{new}-{last}", new])
    if (sheet and sheet.ascii_only) or rng.random() < rates["accents_stripped"]:
        first, last = _strip_accents(first), _strip_accents(last)
    if rng.random() < rates["typo_first"]:
        first = _typo(first, rng)
        if rng.random() < 0.25:
            first = _typo(first, rng)
    if rng.random() < rates["typo_last"]:
        last = _typo(last, rng)
        if rng.random() < 0.25:
            last = _typo(last, rng)
    if rng.random() < rates["phonetic"]:
        if rng.random() < 0.5:
            first = _phonetic(first, rng)
        else:
            last = _phonetic(last, rng)
    if rng.random() < rates["ocr"]:
        if rng.random() < 0.5:
            first = _ocr(first, rng)
        else:
            last = _ocr(last, rng)
    if rng.random() < rates["truncated"]:
        first = first[:max(1, rng.randint(1, max(1, len(first) - 1)))]
    if sheet and sheet.truncate:
        first, last = first[:12], last[:15]
    swap = rates["first_last_swapped"] * (5 if person.origin in EAST_ASIAN else 1)
    if rng.random() < swap:
        first, last = last, first
    if (sheet and sheet.upper) or rng.random() < rates["upper"]:
        first, last = first.upper(), last.upper()
    elif rng.random() < rates["lower"]:
        first, last = first.lower(), last.lower()
    if rng.random() < rates["stray_spaces"]:
        if rng.random() < 0.5:
            first = first + " "
        else:
            last = " " + last if rng.random() < 0.5 else last.replace(" ", "  ") + " "
    out_first: str | None = first
    out_last: str | None = last
    if allow_missing:
        if rng.random() < rates["full_name_in_last"]:
            out_last, out_first = f"{last}, {first}", None
        if rng.random() < rates["first_missing"]:
            out_first = None
        if rng.random() < rates["last_missing"]:
            out_last = None
    return out_first, out_last


def _valid_date(year: int, month: int, day: int) -> dt.date:
    while True:
        try:
            return dt.date(year, month, day)
        except ValueError:
            day -= 1


def _dob(dob: dt.date, rng: random.Random, rates: dict[str, float], allow_missing: bool) -> dt.date | None:
    """The birth date as one record writes it."""
    if allow_missing and rng.random() < rates["missing"]:
        return None
    if dob.day <= 12 and dob.day != dob.month and rng.random() < rates["day_month_swapped"]:
        dob = dt.date(dob.year, dob.day, dob.month)
    if rng.random() < rates["off_by_one_day"]:
        dob = dob + dt.timedelta(days=rng.choice([-1, 1]))
    if rng.random() < rates["wrong_year"]:
        kind = rng.random()
        if kind < 0.6:
            year = dob.year + rng.choice([-1, 1])
        elif kind < 0.85:
            year = dob.year - dob.year % 10 + int(rng.choice(DIGIT_NEIGHBOURS[str(dob.year % 10)]))
        else:
            year = dob.year + rng.choice([-10, 10])
        dob = _valid_date(year, dob.month, dob.day)
    if rng.random() < rates["month_off"]:
        month = dob.month + rng.choice([-1, 1])
        dob = _valid_date(dob.year + (month > 12) - (month < 1), (month - 1) % 12 + 1, dob.day)
    if rng.random() < rates["first_of_month"]:
        dob = dob.replace(day=1)
    if rng.random() < rates["jan_first"]:
        dob = dt.date(dob.year, 1, 1)
    if rng.random() < rates["unrelated"]:
        dob = dt.date(THIS_YEAR.year - 18, 1, 1) + dt.timedelta(days=rng.randrange(13 * 365))
    return dob


def _id(value: str | None, rng: random.Random, rates: dict[str, float], excel: bool,
        others: list[str]) -> str | None:
    """An ID as one record writes it."""
    if value is None:
        return None
    if others and rng.random() < rates["other_students"]:
        value = rng.choice(others)
    digits = [i for i, ch in enumerate(value) if ch.isdigit()]
    if digits and rng.random() < rates["digit_substituted"]:
        i = rng.choice(digits)
        value = value[:i] + rng.choice(DIGIT_NEIGHBOURS[value[i]]) + value[i + 1:]
    if len(digits) > 1 and rng.random() < rates["digits_transposed"]:
        i = rng.choice(digits[:-1])
        if value[i + 1].isdigit() and value[i] != value[i + 1]:
            value = value[:i] + value[i + 1] + value[i] + value[i + 2:]
    if len(digits) > 2 and rng.random() < rates["digit_dropped"]:
        i = rng.choice(digits)
        value = value[:i] + value[i + 1:]
    if digits and rng.random() < rates["digit_inserted"]:
        i = rng.choice(digits)
        value = value[:i] + str(rng.randrange(10)) + value[i:]
    if (excel or rng.random() < rates["leading_zeros_lost"]) and value.isdigit():
        value = value.lstrip("0") or "0"
    return value


def _scaled(rates: dict[str, float], factor: float) -> dict[str, float]:
    return {k: min(1.0, v * factor) for k, v in rates.items()}


def _hard_rates(rng: random.Random, base: dict[str, float]) -> dict[str, float]:
    """Two or three kinds of error forced on one row."""
    rates = dict(base)
    for kind in rng.sample(sorted(rates), rng.randint(2, 3)):
        rates[kind] = 1.0
    return rates


# ---------------------------------------------------------------------------------------------
# IDs


def _id_maker(rng: random.Random):
    fmt = rng.choice(["zero6", "seven", "alpha", "zero8"])
    used: set[str] = set()

    def student_id() -> str:
        while True:
            if fmt == "zero6":
                value = f"{rng.randrange(1000, 400000):06d}"
            elif fmt == "seven":
                value = str(rng.randrange(1_000_000, 10_000_000))
            elif fmt == "alpha":
                value = f"S{rng.randrange(1_000_000):06d}"
            else:
                value = f"{rng.randrange(100_000, 5_000_000):08d}"
            if value not in used:
                used.add(value)
                return value

    return student_id


def _ssid_maker(rng: random.Random):
    used: set[str] = set()

    def ssid() -> str:
        while True:
            value = f"{rng.randrange(100_000_000, 9_999_999_999):010d}"
            if value not in used:
                used.add(value)
                return value

    return ssid


# ---------------------------------------------------------------------------------------------


INCOMING_SCHEMA = {"row_no": pl.Int64, "first_name": pl.String, "last_name": pl.String, "date_of_birth": pl.Date,
                   "student_id": pl.String, "ssid": pl.String, "other_id": pl.String, "school_id": pl.Int64}
EXISTING_SCHEMA = {"student_key": pl.Int64, "first_name": pl.String, "last_name": pl.String,
                   "date_of_birth": pl.Date, "student_id": pl.String, "ssid": pl.String, "other_id": pl.String,
                   "school_id": pl.Int64}


def generate_holdout(size: int, seed: int, with_ids: bool = True
                     ) -> tuple[pl.DataFrame, pl.DataFrame, dict[int, int | None]]:
    """A district: (incoming sheet rows, existing students, truth row_no -> student_key or None)."""
    rng = random.Random(f"holdout-{seed}")
    pools = _pools()
    sheet = Sheet(
        intensity=rng.uniform(0.6, 1.6), upper=rng.random() < 0.2, ascii_only=rng.random() < 0.4,
        truncate=rng.random() < 0.15, excel_student_id=rng.random() < 0.3, excel_ssid=rng.random() < 0.2,
        no_ssid=rng.random() < 0.15, student_id_coverage=rng.uniform(0.85, 0.99),
        ssid_coverage=rng.uniform(0.5, 0.95),
    )
    n_schools = max(3, size // 400)
    people = _population(rng, size, pools, n_schools)

    # namesakes: newcomers with an existing student's first and last name, another birth date
    continuing = [p for p in people if p.role == "continuing"]
    next_key = len(people)
    for _ in range(round(size * 0.015)):
        twin = rng.choice(continuing)
        kind = rng.random()
        if kind < 0.1:
            dob = twin.dob + dt.timedelta(days=rng.choice([-3, -2, -1, 1, 2, 3, 7]))
        elif kind < 0.5:
            dob = _valid_date(twin.dob.year, rng.randint(1, 12), rng.randint(1, 28))
        else:
            dob = dt.date(THIS_YEAR.year - 18, 9, 1) + dt.timedelta(days=rng.randrange(13 * 365))
        if dob == twin.dob:
            dob = dob + dt.timedelta(days=1)
        people.append(Person(next_key, twin.first, _middle_name(rng, twin.origin, twin.sex, twin.first, pools),
                             twin.last, dob, twin.sex, twin.origin, rng.randrange(1 << 30), role="newcomer"))
        next_key += 1

    # IDs and keys
    new_student_id, new_ssid = _id_maker(rng), _ssid_maker(rng)
    keys = rng.sample(range(100_000, 10_000_000), len(people))
    for person, key in zip(people, keys):
        person.key = key
        person.student_id = new_student_id()
        person.ssid = new_ssid()
        if rng.random() < 0.05:
            person.other_id = f"{rng.choice('PTX')}{rng.randrange(10**5, 10**6)}"
    leaver_ids = [p.student_id for p in people if p.role == "leaver"]

    last_year = dt.date(THIS_YEAR.year - 1, 9, 1)
    existing_rates = {**_scaled(NAME_RATES, EXISTING_SCALE), **_scaled(DOB_RATES, EXISTING_SCALE)}
    existing_rows = []
    for person in people:
        if person.role == "newcomer":
            continue
        first, last = _names(person, rng, existing_rates, None, pools, allow_missing=False)
        existing_rows.append({
            "student_key": person.key, "first_name": first.strip(), "last_name": last.strip(),
            "date_of_birth": _dob(person.dob, rng, existing_rates, allow_missing=False),
            "student_id": person.student_id if rng.random() < 0.97 else None,
            "ssid": person.ssid if rng.random() < 0.9 else None, "other_id": person.other_id,
            "school_id": _school(person, last_year, n_schools),
        })

    base_rates = {**_scaled(NAME_RATES, sheet.intensity), **_scaled(DOB_RATES, sheet.intensity)}
    id_rates = _scaled(ID_RATES, sheet.intensity)
    all_ids = [p.student_id for p in continuing]
    all_ssids = [p.ssid for p in continuing]
    sheet_rows: list[tuple[dict, int | None]] = []
    for person in people:
        if person.role == "leaver":
            continue
        copies = 2 if person.role == "continuing" and rng.random() < 0.003 else 1
        for copy in range(copies):
            hard = rng.random() < HARD_ROW_RATE * sheet.intensity
            rates = _hard_rates(rng, base_rates) if hard else base_rates
            first, last = _names(person, rng, rates, sheet, pools, allow_missing=True)
            school = _school(person, THIS_YEAR, n_schools)
            if copy or rng.random() < 0.03:
                school = rng.randrange(1, n_schools + 1)
            newcomer = person.role == "newcomer"
            student_id = person.student_id
            if newcomer and rng.random() < 0.4:
                student_id = None  # not yet given an ID
            elif newcomer and leaver_ids and rng.random() < 0.01:
                student_id = rng.choice(leaver_ids)  # a recycled ID
            if rng.random() >= sheet.student_id_coverage:
                student_id = None
            ssid = person.ssid if rng.random() < sheet.ssid_coverage and not sheet.no_ssid else None
            if newcomer and rng.random() < 0.5:
                ssid = None  # not from another school in the state
            other_id = person.other_id if person.other_id and rng.random() < 0.4 else (
                f"{rng.choice('PTX')}{rng.randrange(10**5, 10**6)}" if rng.random() < 0.02 else None)
            row = {
                "first_name": first, "last_name": last,
                "date_of_birth": _dob(person.dob, rng, rates, allow_missing=True),
                "student_id": _id(student_id, rng, id_rates, sheet.excel_student_id, all_ids),
                "ssid": _id(ssid, rng, id_rates, sheet.excel_ssid, all_ssids),
                "other_id": other_id, "school_id": school,
            }
            sheet_rows.append((row, None if newcomer else person.key))

    # sheets come sorted by school and name
    sheet_rows.sort(key=lambda item: (item[0]["school_id"], (item[0]["last_name"] or "").lower(),
                                      (item[0]["first_name"] or "").lower()))
    if rng.random() < 0.4 and len(sheet_rows) > 20:  # a block of IDs shifted by one row
        start = rng.randrange(len(sheet_rows) - 13)
        length = rng.randint(3, 12)
        shifted = [sheet_rows[i + 1][0]["student_id"] for i in range(start, start + length)]
        for i, value in zip(range(start, start + length), shifted):
            sheet_rows[i][0]["student_id"] = value
    truth: dict[int, int | None] = {}
    incoming_rows = []
    for row_no, (row, key) in enumerate(sheet_rows, start=1):
        incoming_rows.append({"row_no": row_no, **row})
        truth[row_no] = key

    incoming = pl.DataFrame(incoming_rows, schema=INCOMING_SCHEMA)
    existing = pl.DataFrame(existing_rows, schema=EXISTING_SCHEMA).sort("student_key")
    if not with_ids:
        no_ids = [pl.lit(None, dtype=pl.String).alias(c) for c in ("student_id", "ssid", "other_id")]
        incoming, existing = incoming.with_columns(no_ids), existing.with_columns(no_ids)
    return incoming, existing, truth
