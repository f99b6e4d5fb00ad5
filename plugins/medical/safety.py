"""Which drugs a patient's recorded allergies rule out.

Allergies and drugs are coded in different systems: Synthea writes AllergyIntolerance
codes in SNOMED CT (``Allergy to penicillin``, ``Shellfish allergy``), prescriptions in
RxNorm (clinical drugs such as ``Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet``).
Both are mapped to *substance names* and compared there, each display read as ``normal_text``:

- a drug's substances are its RxNorm ingredients, read from the normalised name
  (``ingredient strength unit / ingredient ...``, a combination's ``A/B`` or ``A-B`` split
  too; a brand in brackets, a known brand pack or another name of a drug is resolved by
  ``BRANDS``); a name that names no ingredient, or one the tables do not know (``INGREDIENTS``
  and the rest, and a hospital's own: ``Formulary``, ``formulary.py``), is ``unreadable``:
  ``withheld`` (the shipped model's and the api's one filter) withholds it from a patient with
  allergies;
- an allergy's substances are the substance its display names (``Allergy to X``,
  ``X allergy``, an RxNorm ingredient display), widened to the drug class it stands for
  (``CLASSES``: an allergy to penicillin rules out amoxicillin).

A record may carry an allergy's code without a display: the SNOMED CT drug-allergy
findings and ICD-10 allergy statuses in ``ALLERGY_CODES`` name their substance by code, and so
do the codes a hospital maps in its formulary file (``rxnorm:723 = "amoxicillin"``: RxNorm's
ingredient codes are not shipped, a wrong code in a safety table silently misreads an
allergy; ``Formulary.allergy_codes``). An allergy neither its display
nor its code maps to a substance is *unread*: the answer lists it for a person to check
(``unread``), because no filter can promise safety against what it cannot read.

A drug is ruled out when one of its ingredients starts with one of the allergy's
substances (``oxycodone`` rules out ``oxycodone hydrochloride``). Every recorded allergy
counts, whatever its status or date: a safety filter errs on the side of caution.
Food and environmental allergies (all of Synthea's) map to no drug; excipients (peanut
oil, gelatin) are not modelled.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

#: Drug classes an allergy display may name, and the ingredients they cover: the WHO ATC
#: classification's members in US (USAN) and international (INN) spelling (J01C penicillins,
#: J01DB-DI cephalosporins, J01E sulfonamides, J01FA macrolides, J01FF lincosamides, M01A and
#: N02BA NSAIDs and salicylates, N02A opioids), the ones in use. A member missing here is a drug
#: of the class let through: each list was found short (flucloxacillin, cefepime, indomethacin,
#: sulfisoxazole, methadone).
CLASSES: dict[str, tuple[str, ...]] = {
    "penicillin": (
        *("penicillin", "amoxicillin", "ampicillin", "piperacillin", "nafcillin", "oxacillin", "dicloxacillin"),
        *("cloxacillin", "flucloxacillin", "methicillin", "meticillin", "ticarcillin", "carbenicillin"),
        *("mezlocillin", "azlocillin", "temocillin", "bacampicillin", "pivampicillin", "talampicillin"),
        *("mecillinam", "pivmecillinam", "benzylpenicillin", "phenoxymethylpenicillin", "pheneticillin"),
        *("propicillin", "azidocillin", "hetacillin", "epicillin", "sulbenicillin", "penamecillin"),
    ),
    "cephalosporin": (
        *("cefuroxime", "cephalexin", "cefalexin", "cefaclor", "ceftriaxone", "cefdinir", "cefazolin", "cefadroxil"),
        *("cefepime", "ceftazidime", "cefixime", "cefprozil", "cefpodoxime", "cefoxitin", "cefotaxime"),
        *("cefotetan", "cefditoren", "ceftibuten", "cefoperazone", "ceftizoxime", "cefamandole", "cefmetazole"),
        *("cefonicid", "cefradine", "cephradine", "cefalotin", "cephalothin", "cefapirin", "cephapirin"),
        *("cefaloridine", "cefpirome", "ceftaroline", "ceftobiprole", "ceftolozane", "cefiderocol", "loracarbef"),
    ),
    "sulfonamide": (
        *("sulfamethoxazole", "sulfasalazine", "sulfadiazine", "sulfisoxazole", "sulfafurazole", "sulfacetamide"),
        *("sulfadoxine", "sulfamethizole", "sulfapyridine", "sulfanilamide", "sulfadimidine", "mafenide"),
    ),
    "nsaid": (
        *("ibuprofen", "naproxen", "aspirin", "diclofenac", "meloxicam", "celecoxib", "ketorolac"),
        *("indomethacin", "indometacin", "ketoprofen", "dexketoprofen", "flurbiprofen", "fenoprofen"),
        *("oxaprozin", "etodolac", "nabumetone", "piroxicam", "tenoxicam", "lornoxicam", "sulindac"),
        *("diflunisal", "salsalate", "mefenamic acid", "meclofenamate", "meclofenamic acid", "tolmetin"),
        *("aceclofenac", "etoricoxib", "valdecoxib", "parecoxib", "nimesulide", "dexibuprofen"),
    ),
    "aspirin": ("aspirin", "ibuprofen", "naproxen", "diclofenac", "ketorolac"),
    # what a penicillin-allergic patient is given instead: unknown, they were withheld from every allergic patient
    "macrolide": (
        *("azithromycin", "clarithromycin", "erythromycin", "roxithromycin", "spiramycin", "josamycin"),
        *("telithromycin", "dirithromycin", "midecamycin", "oleandomycin", "troleandomycin", "fidaxomicin"),
    ),
    "lincosamide": ("clindamycin", "lincomycin"),
    "opioid": (
        *("oxycodone", "hydrocodone", "morphine", "codeine", "fentanyl", "tramadol", "meperidine"),
        *("hydromorphone", "oxymorphone", "methadone", "tapentadol", "buprenorphine", "levorphanol"),
        *("pentazocine", "butorphanol", "nalbuphine", "dihydrocodeine", "sufentanil", "remifentanil"),
        *("alfentanil", "pethidine", "diamorphine", "propoxyphene", "dextropropoxyphene"),
    ),
    "codeine": ("codeine",),
}
CLASSES["sulfa"] = CLASSES["sulfonamide"]
CLASSES["pcn"] = CLASSES["penicillin"]  # the clinical abbreviation
CLASSES["beta-lactam"] = CLASSES["beta lactam"] = CLASSES["penicillin"] + CLASSES["cephalosporin"]
CLASSES["sulphonamide"] = CLASSES["sulfonamide"]  # the British spelling
CLASSES["non-steroidal anti-inflammatory"] = CLASSES["nsaid"]
CLASSES["asa"] = CLASSES["acetylsalicylic acid"] = CLASSES["aspirin"]
CLASSES["anti-inflammatory"] = CLASSES["nsaid"]  # "anti-inflammatory agent" (a steroid too, but no drug is let through)
#: The one-word substances of the classes: found anywhere in a drug's display, whatever its punctuation.
CLASS_MEMBERS = frozenset(member for members in CLASSES.values() for member in members if " " not in member)
#: Classes whose members cross-react: an allergy to one member rules out the class
#: (an amoxicillin allergy let penicillin V be recommended). The macrolides' and lincosamides'
#: US labels contraindicate each for a hypersensitivity to any drug of its class.
CROSS_REACTIVE = ("penicillin", "cephalosporin", "sulfonamide", "nsaid", "macrolide", "lincosamide")
_CLASS_OF = {member: name for name in CROSS_REACTIVE for member in CLASSES[name]}
#: Words of allergens that are no drug (food, animals, plants, insects, materials): a part of
#: a display made of these words only is read, and rules out no drug. Any other part whose
#: substance is no drug this module or the model knows (a brand it lacks, a class it has no
#: list for, "milk of magnesia") is unread: listed for a person. A typo of a drug it knows is
#: read as that drug (``_corrected``).
_NOT_DRUG_TEXT = """
    dander animal animals cat cats dog dogs horse hair feathers pollen pollens grass grasses tree trees weed
    ragweed mould mold moulds molds house dust mite mites nut nuts peanut peanuts walnut walnuts almond almonds
    cashew cashews hazelnut hazelnuts pecan pecans pistachio pistachios shellfish fish crustacean crustaceans
    shrimp crab lobster seafood bee bees wasp wasps venom insect insects sting stings wheat gluten egg eggs dairy
    product products milk cow's cow lactose soy soya bean beans sesame latex nickel food foods strawberry strawberries
    tomato tomatoes kiwi banana bananas apple apples citrus chocolate corn mustard celery edible natural rubber"""
NOT_DRUG_WORDS = frozenset(_NOT_DRUG_TEXT.split())
_DASHES = "\\-\u2010\u2011\u2012\u2013\u2014\u2212"  # hyphens (a non-breaking one too), dashes, minus
#: Where one display names several allergies: "penicillin and acetaminophen", "sulfa, codeine"; a ``/`` before a
#: number or a unit is a dose's (``Zestoretic 20/12.5 MG``, ``10 MG/day``), no second allergy (checker v41 F3).
_PER = r"(?:\d|(?:day|dose|ml|kg|hr?|hour|week|actuat)\b)"
_PARTS = re.compile(f"\\s*(?:[,;&+]|/(?!\\s*{_PER})|\\band\\b|\\bor\\b|\\s[{_DASHES}]\\s)\\s*")
_DASH = re.compile(f"[{_DASHES}]")
_WORDS = re.compile(f"[\\s,{_DASHES}]+")
#: Between two ingredients of a combination's name: ``Sulfamethoxazole/Trimethoprim``, ``Amoxicillin-Clavulanate``.
_COMBINED = re.compile(f"(?<=[a-z])(?:\\s*[/+&{_DASHES}]\\s*|\\s+(?:and|with)\\s+)(?=[a-z])")
#: The fewest characters a piece of a combination's name (``_COMBINED``) or of an allergy's hyphened name
#: has to be an ingredient: ``Bicillin L-A`` is no combination of ``l`` and ``a``.
SHORTEST_PIECE = 3
#: Names this long that differ by a letter are one drug misspelt (``simvistatin``), never two.
TYPO_LENGTH, TYPO_RATIO = 8, 0.9
#: Where an allergy's words are the ones the typo rule compares.
_TOKEN = re.compile(f"[^\\s,{_DASHES}]+")
#: The shortest word of an allergy taken as a substance of its own ("naproxen sodium" is
#: naproxen): shorter ones ("b", "acid") matched unrelated drugs' names.
WORD_SUBSTANCE_LENGTH = 6
#: How much of an allergy display is read: a longer one is unread (listed) and read this far.
#: A request's 90,000-word allergy held the treatment route 100 s.
MAX_ALLERGY_CHARS = 300
#: How many allergies of one record are read, and how many characters of their displays
#: together; the rest are listed unread. 600 short ones held the route 9 s, and 100 of 300
#: characters of distinct long words 12 s (each word is checked against every drug).
MAX_ALLERGIES, MAX_ALLERGY_TEXT = 100, 3_000
#: A code longer than this is no code (it is read as unknown; a cache kept 900 KB ones whole).
MAX_CODE_CHARS = 100
#: Drug-allergy codes a record may carry without a display, and their substance: SNOMED CT
#: findings, and the ICD-10 (-CM) allergy statuses a hospital coding in ICD-10 records.
ALLERGY_CODES: dict[str, str] = {
    "snomed:91936005": "penicillin",  # Allergy to penicillin
    "snomed:294505008": "amoxicillin",  # Allergy to amoxicillin
    "snomed:293586001": "aspirin",  # Allergy to aspirin
}
#: Z88.0 Allergy status to penicillin, Z88.2 to sulfonamides, Z88.5 to narcotic agent.
ICD10_ALLERGY = {"Z88.0": "penicillin", "Z88.2": "sulfonamide", "Z88.5": "opioid"}
ALLERGY_CODES |= {f"{system}:{code}": what for system in ("icd10cm", "icd10") for code, what in ICD10_ALLERGY.items()}
#: A recorded allergy as the filter reads it: ``(code, display)``.
Allergy = tuple[str | None, str | None]
#: Brand names in RxNorm displays of this kind of data, and their ingredients.
BRANDS: dict[str, tuple[str, ...]] = {
    "natazia": ("estradiol valerate", "dienogest"),
    "levora": ("levonorgestrel", "ethinyl estradiol"),
    "yaz": ("drospirenone", "ethinyl estradiol"),
    "errin": ("norethindrone",),
    "camila": ("norethindrone",),
    "jolivette": ("norethindrone",),
    "kyleena": ("levonorgestrel",),
    "mirena": ("levonorgestrel",),
    "liletta": ("levonorgestrel",),
    "nuvaring": ("etonogestrel", "ethinyl estradiol"),
    "trinessa": ("norgestimate", "ethinyl estradiol"),
    "seasonique": ("levonorgestrel", "ethinyl estradiol"),
    "norinyl": ("norethindrone", "mestranol"),
    "ortho tri-cyclen": ("norgestimate", "ethinyl estradiol"),
    "tegretol": ("carbamazepine",),
    "valium": ("diazepam",),
    "lasix": ("furosemide",),
    "klonopin": ("clonazepam",),
    "vicodin": ("acetaminophen", "hydrocodone bitartrate"),
    "toprol": ("metoprolol succinate",),
    "colcrys": ("colchicine",),
    "aricept": ("donepezil hydrochloride",),
    "augmentin": ("amoxicillin", "clavulanate"),
    "amoxil": ("amoxicillin",),
    "pen vk": ("penicillin v potassium",),
    "moxatag": ("amoxicillin",),
    "veetids": ("penicillin v potassium",),
    "unasyn": ("ampicillin", "sulbactam"),
    "zosyn": ("piperacillin", "tazobactam"),
    "advil": ("ibuprofen",),
    "motrin": ("ibuprofen",),
    "aleve": ("naproxen",),
    "bactrim": ("sulfamethoxazole", "trimethoprim"),
    "keflex": ("cephalexin",),
    # the penicillins, cephalosporins, macrolides, NSAIDs, sulfonamides and opioids' common US and UK brands
    # (DailyMed, the BNF), and the names besides RxNorm's of one drug (INN, BAN, UK combination
    # names, clinical abbreviations): each was recommended to a patient allergic to its ingredient
    "bicillin": ("penicillin g benzathine",),
    "bicillin l-a": ("penicillin g benzathine",),
    "bicillin c-r": ("penicillin g benzathine", "penicillin g procaine"),
    "trimox": ("amoxicillin",),
    "principen": ("ampicillin",),
    "dynapen": ("dicloxacillin",),
    "celebrex": ("celecoxib",),
    "toradol": ("ketorolac",),
    "naprosyn": ("naproxen",),
    "anaprox": ("naproxen",),
    "voltaren": ("diclofenac",),
    "mobic": ("meloxicam",),
    "indocin": ("indomethacin",),
    "feldene": ("piroxicam",),
    "relafen": ("nabumetone",),
    "septra": ("sulfamethoxazole", "trimethoprim"),
    "percocet": ("oxycodone", "acetaminophen"),
    "norco": ("hydrocodone", "acetaminophen"),
    "oxycontin": ("oxycodone",),
    "dilaudid": ("hydromorphone",),
    "demerol": ("meperidine",),
    "ultram": ("tramadol",),
    "ceftin": ("cefuroxime",),
    "zithromax": ("azithromycin",),
    "biaxin": ("clarithromycin",),
    "omnicef": ("cefdinir",),
    "rocephin": ("ceftriaxone",),
    "tylenol": ("acetaminophen",),
    "zestril": ("lisinopril",),
    "carbatrol": ("carbamazepine",),
    "co-amoxiclav": ("amoxicillin", "clavulanate"),
    "amoxiclav": ("amoxicillin", "clavulanate"),
    "amox-clav": ("amoxicillin", "clavulanate"),
    "amox": ("amoxicillin",),
    "co-trimoxazole": ("sulfamethoxazole", "trimethoprim"),
    "smx-tmp": ("sulfamethoxazole", "trimethoprim"),
    "co-codamol": ("codeine", "acetaminophen"),
    "paracetamol": ("acetaminophen",),
    "pethidine": ("meperidine",),
    "acetylsalicylic acid": ("aspirin",),
    "asa": ("aspirin",),
    "benzylpenicillin": ("penicillin g",),
    "phenoxymethylpenicillin": ("penicillin v",),
    # the acid's name of one, and brands of drugs the data prescribes, on a clinic's allergy lists (h450 F3)
    "clavulanic acid": ("clavulanate",),
    "clavulanic": ("clavulanate",),
    "prinivil": ("lisinopril",),
    "zestoretic": ("lisinopril", "hydrochlorothiazide"),
    "prinzide": ("lisinopril", "hydrochlorothiazide"),
    "glucophage": ("metformin",),
    "macrobid": ("nitrofurantoin",),
    "macrodantin": ("nitrofurantoin",),
    **dict.fromkeys(("z-pak", "z-pack", "zpak", "zpack"), ("azithromycin",)),
}
#: RxNorm ingredient (IN) names besides the ones above, so that a drug's name is read to an
#: ingredient the filter knows (``unreadable``): every ingredient of the 100 drugs the Synthea data
#: prescribes (fhir-synthea-smart-r4-331 and fhir-synthea-smart-r4, RxNorm's displays as written
#: there), and the shortest ingredients' names (iron, zinc, urea). A drug with another ingredient
#: is withheld from a patient with allergies, its reason said: a hospital names its own drugs in
#: a formulary file its profile sets (``formulary.py``), never here.
INGREDIENTS = frozenset(
    (
        *("albuterol", "alendronic acid", "allopurinol", "alteplase", "amiodarone", "amlodipine", "astemizole"),
        *("atomoxetine", "atorvastatin", "atropine", "captopril", "cetirizine", "chlorpheniramine", "clopidogrel"),
        *("cyclosporine", "dextromethorphan", "digoxin", "diphenhydramine", "docetaxel", "donepezil"),
        *("doxycycline", "doxylamine", "epinephrine", "ferrous sulfate", "fexofenadine", "fluoxetine"),
        *("fluticasone", "galantamine", "hydrochlorothiazide", "hydrocortisone", "leucovorin", "leuprolide"),
        *("levothyroxine", "loratadine", "medroxyprogesterone", "memantine", "metformin", "methotrexate"),
        *("methylphenidate", "metoprolol", "nitrofurantoin", "nitroglycerin", "norelgestromin", "oxaliplatin"),
        *("phenazopyridine", "prednisone", "salmeterol", "simvastatin", "terfenadine", "verapamil"),
        *("vitamin b 12", "warfarin", "iron", "zinc", "urea"),
    )
)
_AMOUNT = re.compile(r"^(nda\d+|\d[\d.,]*|ml|mg|hr|mcg|unt|meq|actuat|day|pack|abuse-deterrent|\d+\w*)$")
#: A word that ends an ingredient's name: a strength or a form, whole (as a prefix, it ended the brands Oralone,
#: Nasalide and Topicort at their first word, and their allergy went unchecked: h402 F1).
_STOP = re.compile(
    r"^(\d.*|oral|topical|injectable|injection|extended|delayed|prefilled|auto(-\w+)?|injector|metered|transdermal"
    r"|nasal|inhal(ation|ant|er|ed)?)[,;]?$"
)
#: ICD-10's titles too: ICD-10-CM's Z88 "Allergy status to penicillin", the WHO's "Personal history of allergy to
#: penicillin" (read with "status" left over, a shipped code's own title was listed unread: checker h440 F4).
#: "history" too: "History of penicillin allergy", "H/O: ..." were listed unread (v36 F7), and "Hx of", "PMH:",
#: "Past (medical) history (of)", "Hx. of", "Prior ...", "Previous(ly) ..." with or without a colon (v37 F9, v38 F5)
_ALLERGY_WORDS = re.compile(
    r"\b(?:(personal history of allergy to|allergy status to|allergy to|allergy|allergic to"
    r"|(?:allergic reaction|anaphylaxis) (?:to|caused by|due to)|intolerance to|intolerance"
    r"|hypersensitivity to|hypersensitivity)(?!\w)"
    r"|(?:past (?:medical )?(?:history|hx)|history|hx\.?|h/o|pmh|prior|previous(?:ly)?)(?: of)?(?!\w):?)"
)
#: A Condition's display that records an allergy ("Allergy to penicillin", "Penicillin intolerance", "Anaphylaxis
#: due to penicillin" as diagnoses; not "allergic rhinitis" nor "Acute allergic reaction": checker v36 F6).
_ALLERGY_STATEMENT = re.compile(
    r"\b(allergy|allergic to|allergic reaction (?:to|caused by|due to)|hypersensitivity|intolerance|anaphyla\w*)\b"
)
#: ICD-10's "allergy status to drugs" codes (Z88.0-Z88.9, written with or without the dot): a Condition holding
#: one records an allergy, read by its code where ALLERGY_CODES has it, else listed for a person (v36 F5).
_ALLERGY_STATUS = re.compile(r"icd10(?:cm)?:Z88(?:\.?\d*)?", re.IGNORECASE)
_QUALIFIER = re.compile(r"\([^)]*\)|\[[^]]*\]")
#: SNOMED CT's semantic tags: the only brackets an allergy display loses ("(finding)"); others
#: name more allergies ("Penicillin allergy (also ibuprofen)" hid the ibuprofen).
_SEMANTIC_TAG = re.compile(
    r"\((?:disorder|finding|substance|product|medicinal product|situation|qualifier value|organism|physical object)\)"
)
#: Records that say there is no allergy: no known (drug, food, environmental) allergy, as SNOMED CT's
#: situations code them or as written: not an allergy the filter cannot read (listed, every drug selected withheld).
NO_ALLERGY_CODES = frozenset(("snomed:409137002", "snomed:716186003", "snomed:428607008", "snomed:429625007"))
_NO_ALLERGY = re.compile(r"(?:no known (?:drug |food |environmental |medication )?allerg(?:y|ies)|nkda|nka)")
#: A dose's, a form's or a release's word beside a drug an allergy names (``Zestril 10 MG``, ``Glucophage XR``,
#: ``lisinopril 10 MG Oral Tablet``): the allergy is to the drug whatever its dose, and was listed unread, every
#: selection withheld (checker v40 F1, v41 F3).
_DOSE_OR_RELEASE = re.compile(
    r"^(\d[\d.,/]*\w*|nda\d+|(?:mg|mcg|g|gm|ml|iu|unt|units?)(?:/\w+)?|xr|er|sr|cr|dr|xl|ec|ds|oral|tabs?|tablets?|caps"
    r"|capsules?|chewable|film|coated|solution|suspension|syrup|injection|injectable|auto|injector|metered|dose"
    r"|actuat|inhaler|transdermal|system|patch|extended|delayed|release|hr|po|bid|tid|qid|qd|prn|daily|twice|once"
    r"|per|day|/)$"
)
#: Words of an allergy display that name nothing (``penicillin with codeine``, ``also ibuprofen``).
_FILLER_TEXT = "to of with also and or the a an in by from medication medications drug drugs agent agents antibiotic"
FILLER_WORDS = frozenset(_FILLER_TEXT.split())
#: Words that say an allergy is to some drug: a part with one of them and no drug named is
#: unread, whatever else it says ("Drug product allergy", "Food-drug allergy" were read as
#: allergies to foods, and amoxicillin was recommended, listed nowhere).
DRUG_KIND_WORDS = frozenset(("medication", "medicine", "drug", "agent", "antibiotic", "pharmaceutical", "medicinal"))
#: Words of a part that says no more than "a drug" (a generic coding's "Allergy to drug (finding)", "Drug
#: allergy"): beside a part naming the drug (its text: "Allergy to drug (finding); metformin"), or a code the
#: filter reads, it is read; alone it is listed (which drug?). "antibiotic" and "agent" say more: never so read.
SOME_DRUG_WORDS = frozenset(("drug", "medication", "medicine", "medicinal", "pharmaceutical", "product", "to", "a"))
#: Words of ingredient names that name no substance alone: a "folic acid" allergy rules out
#: no other acid, a "human albumin" one no human insulin.
_GENERIC_TEXT = "acid vitamin human oxide hydroxide extract oil water vaccine protein solution cream ointment"
GENERIC_WORDS = frozenset(_GENERIC_TEXT.split())
#: Salt and form words of ingredient names: ``naproxen sodium`` is naproxen, never "sodium".
_SALT_TEXT = """sodium potassium calcium hydrochloride hcl sulfate sulphate acetate citrate phosphate succinate
    tartrate maleate fumarate besylate mesylate bitartrate bromide chloride valerate monohydrate dihydrate
    trihydrate macrocrystals hyclate hydrobromide propionate dipropionate axetil proxetil pivoxil tromethamine
    trometamol benzathine procaine"""
SALT_WORDS = frozenset(_SALT_TEXT.split())
#: The words that never stand for a substance alone (built once: each word of a display is asked).
NO_SUBSTANCE_WORDS = FILLER_WORDS | SALT_WORDS | NOT_DRUG_WORDS | GENERIC_WORDS


def normal_text(text: str) -> str:
    """``text`` as the filter reads it: NFKC (full-width letters as letters), casefolded, without accents,
    invisible characters (zero-width spaces, soft hyphens) and controls but spaces (NUL, BEL), Turkish
    dotless i as i. Each hid a drug's name: amoxicillin in full-width letters, with zero-width spaces,
    or with Turkish dotted capital Is was recommended to a patient allergic to penicillin."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    kept = "".join(c for c in folded if unicodedata.category(c) not in ("Mn", "Cf", "Cc") or c.isspace())
    return unicodedata.normalize("NFC", kept).replace("\u0131", "i")


def _named(text: str) -> list[tuple[str, list[str]]]:
    """Each ingredient of a normalised drug name (its parts between `` / ``, brackets left out),
    read whole and in the pieces a combination's sign or word joins (``_COMBINED``)."""
    plain = _QUALIFIER.sub(" ", text)
    return [(_drug_name(part), _pieces(_COMBINED.sub(" / ", part).split(" / "))) for part in plain.split(" / ")]


def _pieces(pieces: Iterable[str]) -> list[str]:
    """The ingredients of a combination's pieces: one of a letter or two is none (``Bicillin L-A``
    was read as ``l`` and ``a``, and an allergy to "A" ruled it out)."""
    return [name for piece in pieces if len(name := _drug_name(piece)) >= SHORTEST_PIECE]


def _drug_name(part: str) -> str:
    """The ingredient a part of a drug's name names: its words after leading amounts (``24 HR``),
    before its strength or form ("" when it has none)."""
    words = part.split()
    while words and _AMOUNT.match(words[0]):
        words = words[1:]
    name: list[str] = []
    for word in words:
        if _STOP.match(word):
            break
        name.append(word.strip(","))
    return " ".join(name)


def _names_a_substance(word: str) -> bool:
    """Whether a word of an allergy or an ingredient name can stand for a substance of its own."""
    return len(word) >= WORD_SUBSTANCE_LENGTH and word not in NO_SUBSTANCE_WORDS


def _phrase_index(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``Formulary.phrases``: the names of several words by their words, as ``_WORDS`` splits them."""
    index: dict[str, list[str]] = {}
    for name in names:
        if " " in (phrase := _WORDS.sub(" ", name)):
            index.setdefault(phrase, []).append(name)
    return {phrase: tuple(found) for phrase, found in index.items()}


@attrs.frozen(eq=False)  # hashed by identity: the caches below key on it, one object per formulary
class Formulary:
    """The names drugs and allergies are read with: the brands and ingredients the filter knows,
    the shipped ones (``SHIPPED``: ``BRANDS``, ``INGREDIENTS``) or those and a hospital's own
    (``formulary.py``), and the tables derived from them, built here once per formulary, never
    per request. Every function of the filter takes one (the shipped one by default)."""

    #: Brand names (``normal_text``) and their ingredients.
    brands: Mapping[str, tuple[str, ...]]
    #: Ingredient names besides the classes' members and the brands' ingredients.
    ingredients: frozenset[str]
    #: Allergy codes (``system:code``, as records carry them) besides ``ALLERGY_CODES``, and the
    #: substance each stands for (a class, an ingredient or a brand the other tables know).
    allergy_codes: Mapping[str, str] = attrs.field(factory=dict)
    #: The drug substances known by name: classes, their members, brands, coded allergies, ingredients.
    known_drugs: frozenset[str] = attrs.field(init=False)
    #: The words of the known ingredients (class members, brands' ingredients, ``ingredients``) that are
    #: substances of their own (``_names_a_substance``): known as the first word of a drug's name (``_known``).
    ingredient_words: frozenset[str] = attrs.field(init=False)
    #: Known ingredients and brands as a drug's name reads them (``_drug_name``: "Vitamin B 12" is ``vitamin b``).
    known_names: frozenset[str] = attrs.field(init=False)
    #: The words of the known drugs an allergy's typo is read as (``_corrected``): "penicilin" is penicillin.
    typo_names: frozenset[str] = attrs.field(init=False)
    #: Each class and brand of several words, by its words space-joined (``_phrases`` looks a part's runs of words
    #: up: it read every name for each part, so a 60,000-brand formulary took minutes: checker h421 F1).
    phrases: Mapping[str, tuple[str, ...]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        members = {member for members in CLASSES.values() for member in members}
        named = members | {part for parts in self.brands.values() for part in parts} | self.ingredients
        known = frozenset([*CLASSES, *self.brands, *ALLERGY_CODES.values(), *self.allergy_codes.values(), *named])
        derived = {
            "known_drugs": known,
            "ingredient_words": frozenset(w for name in named for w in _WORDS.split(name) if _names_a_substance(w)),
            "known_names": frozenset(_drug_name(name) for name in [*named, *self.brands]),
            "typo_names": frozenset(w for name in known for w in _WORDS.split(name) if _names_a_substance(w)),
            "phrases": _phrase_index([*CLASSES, *self.brands]),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def same_names(self, other: Formulary) -> bool:
        """Whether ``other`` knows the same brands, ingredients and allergy codes (two readings of one
        file are two objects)."""
        return (self.brands, self.ingredients, self.allergy_codes) == (
            other.brands,
            other.ingredients,
            other.allergy_codes,
        )

    def by_code(self, code: str | None) -> str | None:
        """The substance an allergy's code stands for: one of ``ALLERGY_CODES`` or the formulary's
        (``rxnorm:723`` mapped to amoxicillin), else None (the code alone is unread)."""
        return ALLERGY_CODES.get(code or "") or self.allergy_codes.get(code or "")


#: The shipped tables: every function's default.
SHIPPED = Formulary(BRANDS, INGREDIENTS)


def ingredients(display: str | None, formulary: Formulary = SHIPPED) -> frozenset[str]:
    """The ingredient names of an RxNorm drug display (``normal_text``), its brands read with
    ``formulary``'s. A name may join its ingredients by ``/``, ``-``, ``+``, ``&``, ``and`` or
    ``with`` (``Hydrocodone/Acetaminophen 5/325 MG`` hid the acetaminophen): it is read as
    written and split there, both."""
    brands = formulary.brands
    if not display:
        return frozenset()
    text = normal_text(display)
    found: set[str] = set()
    for brand in re.findall(r"\[([^]]+)\]", text):
        found.update((brand.strip(), *brands.get(brand.strip(), ())))
    for whole, pieces in _named(text):
        for name in filter(None, (whole, *pieces)):
            found.update(brands.get(name) or brands.get(name.split()[0]) or (name,))
    for word in re.findall(r"[a-z]+", text):  # a name the parse above misses: a pack's parts, hyphens, glued
        found.update(brands.get(word) or ((word,) if word in CLASS_MEMBERS else ()))  # digits ("Amoxicillin500")
    return frozenset(found)


#: A drug name needs a run of this many letters to be read: the shortest ingredients' names
#: (iron, zinc, urea) have 4; ``Pen V`` has none, and matched no allergy.
READABLE_LETTERS = 4


def unreadable(display: str | None, formulary: Formulary = SHIPPED) -> str | None:
    """Why a drug's name cannot be checked against allergies, or None when it can: empty, with
    letters of another alphabet once ``normal_text`` (amoxicillin with a Cyrillic o), naming no
    ingredient (``Pen V``), or with an ingredient the filter does not know (``Zyvox 600 MG``, a brand
    of linezolid not in ``formulary``'s brands: ``_known``). Such a drug may be any drug: for a patient
    with allergies it is withheld, never recommended (``withheld``)."""
    text = normal_text(display or "")
    if not text.strip():
        return "its name is empty"
    found = ingredients(display, formulary)
    if any(not char.isascii() and char.isalpha() for name in found for char in name):
        return "its name has letters of another alphabet"
    if not any(re.search(f"[a-z]{{{READABLE_LETTERS}}}", name) for name in found):
        return "its name names no ingredient"
    named = [(whole, [piece for piece in pieces if piece]) for whole, pieces in _named(text) if whole]
    for whole, pieces in named or [(brand.strip(), []) for brand in re.findall(r"\[([^]]+)\]", text)]:
        known = _known(whole, formulary) or (pieces and all(_known(piece, formulary) for piece in pieces))
        if not known:  # "Amoxicillin-Clavulanate": known in pieces
            return f"its name names no ingredient the filter knows ({whole!r:.80})"
    return None


def _known(name: str, formulary: Formulary) -> bool:
    """Whether an ingredient a drug's name names (``_drug_name``) is one ``formulary`` knows: a known
    drug's name as a drug's name reads it (``vitamin b`` of ``Vitamin B 12``), or a name whose
    first word is a brand or a word of a known ingredient (``penicillin v potassium``, ``amiodarone
    hydrochloride``) or misspells one (the data's ``Simvistatin``, as ``conflicts`` reads it)."""
    first, words = name.split()[0] if name else "", formulary.ingredient_words
    return name in formulary.known_names or first in formulary.brands or first in words or bool(_misspelt(first, words))


#: A drug as the filter reads its name (``read_drug``): its ingredients, and why it cannot be read.
Drug = tuple[frozenset[str], str | None]


def read_drug(display: str | None, formulary: Formulary = SHIPPED) -> Drug:
    """A drug's name as ``withheld`` reads it: its ``ingredients`` and ``unreadable``'s reason."""
    return ingredients(display, formulary), unreadable(display, formulary)


def withheld(
    allergies: list[Allergy], drugs: Mapping[str, Drug], formulary: Formulary = SHIPPED
) -> dict[str, list[str]]:
    """Of ``drugs`` (``read_drug``, with the same ``formulary``), those a record's ``allergies``
    (``recorded_allergies``, asked once by the caller) rule out, with the names of the allergies that
    do; and for a record with any allergy, those whose name cannot be read, with the reason in their
    place (``(not checked against the allergies: ...)``). The one filter the shipped model applies
    before it decides and the treatment api after any model's answer: the model's lacked the
    unreadable names the api withheld."""
    if not allergies:
        return {}
    found = ruled_out(excluded_by(allergies, formulary), {key: parts for key, (parts, _) in drugs.items()})
    unread_names = {key: [f"(not checked against the allergies: {why})"] for key, (_, why) in drugs.items() if why}
    return unread_names | found


def allergy_parts(display: str | None) -> list[str]:
    """What each allergy a display names is (lower case, without "allergy to" and qualifiers)."""
    read = normal_text((display or "")[:MAX_ALLERGY_CHARS])[:MAX_ALLERGY_CHARS]  # NFKC may lengthen it
    text = re.sub(r"[()\[\]]", ",", _SEMANTIC_TAG.sub(" ", read))
    named = " ".join(_ALLERGY_WORDS.sub(" ", text).split())
    return [part for part in _PARTS.split(named) if part]


@functools.lru_cache(maxsize=4096)  # asked of each part by both substances() and unread()
def _phrases(named: str, formulary: Formulary) -> tuple[str, ...]:
    """The classes and brands of several words a part names, hyphens or not, as written or
    in the singular ("non steroidal anti inflammatory drugs", "ortho tri cyclen lo", "beta
    lactams", "anti-inflammatories"): each run of its words looked up in ``formulary.phrases``."""
    words = [word for word in _WORDS.split(named) if word]
    found: list[str] = []
    for forms in (words, [_forms(word)[-1] for word in words]):
        for start in range(len(forms) - 1):
            for end in range(start + 2, len(forms) + 1):
                found += formulary.phrases.get(" ".join(forms[start:end]), ())
    return tuple(dict.fromkeys(found))


def _part_substances(named: str, formulary: Formulary) -> set[str]:
    """The substances one named allergy rules out, before its class is widened."""
    brands = formulary.brands
    found = {named, *CLASSES.get(named, ()), *brands.get(named, ())}
    if _DASH.search(named):  # amoxicillin-clavulanate (beta-lactam is a class name too)
        found.update(piece for piece in _DASH.split(named) if len(piece) >= SHORTEST_PIECE)
    for name in _phrases(named, formulary):  # a class or brand named in a longer display (agent, drug, antibiotic...)
        found.update(CLASSES.get(name, ()), brands.get(name, ()))
    for word in filter(None, _WORDS.split(named)):
        for form in _forms(word):  # as _read reads it: "the colcrys", "pcns", "ferrous sulphate", "valiums"
            found.update(CLASSES.get(form, ()), brands.get(form, ()))
            if _names_a_substance(form):  # each drug it names: "naproxen sodium" is naproxen, "ibuprofen with codeine"
                found.add(form)
    return found


def _forms(word: str) -> tuple[str, ...]:
    """A word as written and without a plural's ``s`` (or ``ies``: anti-inflammatories), its
    singular last: the one reading of a word for both whether an allergy is read and what it
    rules out (they differed: "Allergy to PCNs" read, ruling out nothing, and amoxicillin was
    recommended, listed nowhere)."""
    if word.endswith("ies") and len(word) > 3:
        return (word, word[:-1], f"{word[:-3]}y")
    return (word, word[:-1]) if word.endswith("s") and len(word) > 1 else (word,)


def _widened(found: set[str]) -> frozenset[str]:
    """``found`` and the cross-reactive classes of its members, a member's salt or form too: a brand
    of the table that stands for "penicillin v potassium" ruled out penicillin V alone, and
    amoxicillin was recommended to a patient allergic to Pen VK."""
    for substance in list(found):
        member = substance if substance in _CLASS_OF else substance.split(" ", 1)[0]
        found.update(CLASSES.get(_CLASS_OF.get(member, ""), ()))
    return frozenset(found)


def substances(display: str | None, formulary: Formulary = SHIPPED) -> frozenset[str]:
    """The substances an allergy display rules out (each allergy it names, as written and with its
    typos of known drugs mended: ``_corrected``; its class widened), lower case."""
    return _widened(
        set().union(
            *(
                _part_substances(part, formulary)
                | _part_substances(_corrected(part, formulary.typo_names, formulary), formulary)
                for part in allergy_parts(display)
            )
        )
    )


def allergy_substances(code: str | None, display: str | None, formulary: Formulary = SHIPPED) -> frozenset[str]:
    """What a recorded allergy rules out: its display's substances and its code's."""
    code = code if code is None or len(code) <= MAX_CODE_CHARS else None
    return _allergy_substances(code, None if display is None else display[:MAX_ALLERGY_CHARS], formulary)


@functools.lru_cache(maxsize=4096)  # the same few displays, in every visit of every patient; as read, not whole
def _allergy_substances(code: str | None, display: str | None, formulary: Formulary) -> frozenset[str]:
    by_code = formulary.by_code(code)
    return substances(display, formulary) | (substances(by_code, formulary) if by_code else frozenset())


def read_allergies(allergies: Iterable[Allergy]) -> tuple[list[Allergy], int]:
    """The ``(code, display)`` allergies of a record that are read, and how many are not: the
    first MAX_ALLERGIES, within MAX_ALLERGY_TEXT characters of display together."""
    allergies, read, text = list(allergies), [], 0
    for code, display in allergies[:MAX_ALLERGIES]:
        text += len((display or "")[:MAX_ALLERGY_CHARS])
        if text > MAX_ALLERGY_TEXT:
            break
        read.append((code, display))
    return read, len(allergies) - len(read)


def recorded_allergies(record: Any, formulary: Formulary = SHIPPED) -> list[Allergy]:
    """A record's allergies as the filter reads them: its AllergyIntolerances, and its Conditions that record an
    allergy (a code the filter maps to a substance, an ICD-10 allergy status ``Z88.x``, or a display saying an
    allergy): a clinic coding in ICD-10
    puts "Z88.0 Allergy status to penicillin" on the problem list, and a penicillin was selected for that patient,
    nothing said (checker h440 F3)."""
    return [
        (event.code, event.display)
        for event in record.timeline
        if event.kind == "allergy"
        or (
            event.kind == "condition"
            and (
                formulary.by_code(event.code)
                or _ALLERGY_STATUS.fullmatch(event.code or "")
                or _ALLERGY_STATEMENT.search(normal_text(event.display or ""))
            )
        )
    ]


def excluded_by(allergies: list[Allergy], formulary: Formulary = SHIPPED) -> dict[str, frozenset[str]]:
    """Of a record's ``allergies`` (``recorded_allergies``), those the filter reads (``read_allergies``), by
    name (display, else code), with what each rules out: one display under two codes rules out what either does."""
    found: dict[str, frozenset[str]] = {}
    read, _ = read_allergies(allergies)
    for code, display in read:  # the rest: listed unread
        name = display or code or ""
        found[name] = found.get(name, frozenset()) | allergy_substances(code, display, formulary)
    return found


def ruled_out(allergies: Mapping[str, frozenset[str]], drugs: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    """Of ``drugs`` (code: ingredients), those ``allergies`` (``excluded_by``) rule out, with
    the names of the allergies that do."""
    found: dict[str, list[str]] = {}
    for name, excluded in allergies.items():
        if excluded:
            for code, parts in drugs.items():
                if conflicts(parts, excluded):
                    found.setdefault(code, []).append(name)
    return found


@functools.lru_cache(maxsize=8)
def _typo_names(firsts: frozenset[str], formulary: Formulary) -> frozenset[str]:
    """``formulary``'s typo names and the first words of other drugs' ingredient names (``firsts``),
    those the typo rule of ``conflicts`` compares an allergy with."""
    return formulary.typo_names | firsts


@functools.lru_cache(maxsize=8)
def _by_length(names: frozenset[str]) -> dict[int, tuple[str, ...]]:
    """``names`` the typo rule compares (TYPO_LENGTH letters or more) by length, in order: a word
    is compared with names of nearly its length only."""
    found: dict[int, list[str]] = {}
    for name in sorted(names):
        if len(name) >= TYPO_LENGTH:
            found.setdefault(len(name), []).append(name)
    return {length: tuple(group) for length, group in found.items()}


@functools.lru_cache(maxsize=4096)
def _corrected(part: str, names: frozenset[str], formulary: Formulary) -> str:
    """``part`` with each word that misspells one of ``names`` (``_typo``), and names none of them
    as written or in the singular, replaced by the nearest such name: one reading of a typo for
    what an allergy rules out and for whether it is read ("Allergy to penicilin" withheld
    penicillin V by the typo rule, was listed unread too, and let amoxicillin through)."""

    def mended(match: re.Match[str]) -> str:
        word = match.group()
        forms = _forms(word)
        if any(form in names or form in CLASSES or form in formulary.brands for form in forms):
            return word
        return next((name for form in forms if (name := _misspelt(form, names))), word)

    return _TOKEN.sub(mended, part)


@functools.lru_cache(maxsize=4096)
def _misspelt(word: str, names: frozenset[str]) -> str | None:
    """The name of ``names`` that ``word`` misspells (``_typo``; the nearest), or None."""
    if not _names_a_substance(word):
        return None
    by_length = _by_length(names)
    near = (name for length in range(len(word) - 2, len(word) + 3) for name in by_length.get(length, ()))
    found = [(difflib.SequenceMatcher(None, name, word).ratio(), name) for name in near if _typo(name, word)]
    return max(found)[1] if found else None


def unread(
    allergies: Iterable[tuple[str | None, str | None]],
    drugs: Iterable[Iterable[str]] = (),
    formulary: Formulary = SHIPPED,
) -> list[str]:
    """The ``(code, display)`` allergies no filter can promise safety against: with no display, a
    code the filter does not know; else a display over MAX_ALLERGY_CHARS, or with a part that
    names no drug (``formulary``'s known drugs, the ``drugs``' ingredients the filter reads (``_known``: a
    brand it lacks, ``Cleocin`` of an unreadable drug, rules out that drug alone, never its generic), a
    class) and is no non-drug
    allergen (``NOT_DRUG_WORDS``), or one with a word besides that is no salt or filler word.
    A word that misspells a known drug, or the first word of one of ``drugs``' ingredients, is read
    as that drug (``_corrected``), as ``conflicts`` rules it out. "Allergy to Augmentin" before the
    brand was known, "penicillin with Zyvox" (penicillin read, the rest not), "fish oil",
    "Antibiotic allergy": a person checks them. A part saying only "a drug" (``_some_drug``) is read
    when another part names a drug read, or the code is one the filter reads: a generic coding's
    "Allergy to drug (finding); metformin" was listed on every answer that withheld metformin for it."""
    given = {ingredient for parts in drugs for ingredient in parts if ingredient and _known(ingredient, formulary)}
    known = formulary.known_drugs | given
    drug_words, names = _drug_words(known, formulary), _spaced_names(known)
    typos = _typo_names(frozenset(ingredient.split()[0] for ingredient in given), formulary)
    read, left = read_allergies(allergies)
    missing = {f"{left} allergies past the first {len(read)}"} if left else set()
    for code, display in read:
        if code in NO_ALLERGY_CODES or _NO_ALLERGY.fullmatch(_SEMANTIC_TAG.sub("", normal_text(display or "")).strip()):
            continue  # "No known drug allergy (situation)": no allergy to read
        parts = [_corrected(part, typos, formulary) for part in allergy_parts(display)]  # as conflicts() reads a typo
        if (not parts and not formulary.by_code(code)) or len(display or "") > MAX_ALLERGY_CHARS:
            missing.add(_quoted_allergy(code, display))
        drugs_read = [
            _undosed(part) in names or _salt_of(part, known) or _read(part, drug_words, formulary) for part in parts
        ]  # the drug a generic part stands for: named by another part read as a drug, or by the code
        named = formulary.by_code(code) or any(
            ok and not _some_drug(part) and not set(filter(None, _WORDS.split(part))) <= NOT_DRUG_WORDS | FILLER_WORDS
            for ok, part in zip(drugs_read, parts, strict=True)
        )
        if not all(ok or (named and _some_drug(part)) for ok, part in zip(drugs_read, parts, strict=True)):
            missing.add(_quoted_allergy(code, display))
    return sorted(missing)


def _undosed(part: str) -> str:
    """``part`` without its dose's, form's or release's words, its words spaced as known names are."""
    return " ".join(word for word in _WORDS.split(part) if word and not _DOSE_OR_RELEASE.match(word))


def _quoted_allergy(code: str | None, display: str | None) -> str:
    """An allergy as ``unread`` lists it: its display and its code (``Drug allergy (rxnorm:723)``). The display
    alone hid the substance its code names, and two allergies of one generic display were listed as one (h361 F1)."""
    if display and code:
        return f"{display} ({code})"
    return display or code or "(no code)"


def _some_drug(part: str) -> bool:
    """Whether ``part`` says no more than that the allergy is to a drug (``SOME_DRUG_WORDS``)."""
    words = [word for word in _WORDS.split(part) if word]
    return bool(words) and all(SOME_DRUG_WORDS.intersection(_forms(word)) for word in words)


def _salt_of(part: str, known: frozenset[str]) -> bool:
    """Whether ``part`` is a salt alone that an ingredient of ``known`` begins with ("potassium" and
    potassium chloride): read as that substance, which ``conflicts`` rules out (an allergy to
    potassium withheld potassium chloride and was listed unread too). One no ingredient known
    begins with ("sulfate") rules nothing out: it stays listed."""
    words = _WORDS.split(part)
    return all(word in SALT_WORDS for word in words) and any(
        name == part or name.startswith(f"{part} ") for name in known
    )


@functools.lru_cache(maxsize=8)
def _drug_words(known: frozenset[str], formulary: Formulary) -> frozenset[str]:
    """The words that name a drug alone: a phrase's words only together, a generic or two-letter word never."""
    return frozenset(
        word
        for name in known
        if not _phrases(name, formulary)
        for word in _WORDS.split(name)
        if len(word) > 2 and word not in GENERIC_WORDS
    )


@functools.lru_cache(maxsize=8)
def _spaced_names(known: frozenset[str]) -> frozenset[str]:
    """Known names, hyphens and commas as spaces: a part that is one is read whole ("penicillin v potassium")."""
    return frozenset(_WORDS.sub(" ", name) for name in known)


def _names_a_drug(word: str, drug_words: frozenset[str], formulary: Formulary) -> bool:
    """A class or brand, or a drug's word that is a substance of its own (a shorter one, "iron"
    in "the iron", rules nothing out alone, so it cannot make a part read)."""
    return word in CLASSES or word in formulary.brands or (word in drug_words and _names_a_substance(word))


def _read(part: str, drug_words: frozenset[str], formulary: Formulary) -> bool:
    """Whether ``part`` names a drug (every other word a salt or filler word), or only allergens that are no drug."""
    words = {word for word in _WORDS.split(part) if word}
    named = {w for w in words for one in _forms(w) if _names_a_drug(one, drug_words, formulary)}
    phrased = {word for name in _phrases(part, formulary) for word in _WORDS.split(name)}
    named |= {w for w in words if phrased.intersection(_forms(w))}
    if named:  # "macrolide antibiotics", "sulfa drugs": the plural of a word naming nothing names nothing
        others = words - named
        return all(
            set(_forms(word)) & (FILLER_WORDS | SALT_WORDS | NOT_DRUG_WORDS) or _DOSE_OR_RELEASE.match(word)
            for word in others
        )
    if any(DRUG_KIND_WORDS.intersection(_forms(word)) for word in words):  # a drug, but which?
        return False
    return bool(words & NOT_DRUG_WORDS) and words <= NOT_DRUG_WORDS | FILLER_WORDS


def conflicts(drug_ingredients: Iterable[str], allergy_substances: Iterable[str]) -> list[str]:
    """The allergy substances that rule out a drug with these ingredients: the same substance,
    one a salt or form of the other (``oxycodone hydrochloride``; an allergy to ``naproxen
    sodium`` and naproxen), or the same long name but for a typo (a data set's ``Simvistatin``)."""
    return sorted({substance for _, substance in links(drug_ingredients, allergy_substances)})


def links(drug_ingredients: Iterable[str], allergy_substances: Iterable[str]) -> list[tuple[str, str]]:
    """``(ingredient, allergy substance)`` pairs by which ``conflicts`` rules a drug out: which of its
    ingredients an allergy reaches, and as what (``heirloom medical drug`` says it)."""
    drug = list(drug_ingredients)
    return sorted({(i, s) for s in allergy_substances for i in drug if _same_substance(i, s)})


def _same_substance(ingredient: str, substance: str) -> bool:
    if ingredient == substance or ingredient.startswith(f"{substance} ") or substance.startswith(f"{ingredient} "):
        return True
    if _names_a_substance(substance) and substance in ingredient.split():  # estradiol in ethinyl estradiol
        return True
    return _typo(ingredient.split()[0], substance)


@functools.lru_cache(maxsize=8192)
def _letters(word: str) -> int:
    """The letters of ``word`` as bits (a letter of one word and not the other is at least one
    letter ``difflib`` cannot match; two letters may share a bit, which only lowers the count)."""
    return functools.reduce(operator.or_, (1 << (ord(letter) % 64) for letter in word), 0)


def _typo(name: str, word: str) -> bool:
    """Whether ``word`` is ``name`` (a drug's first word) misspelt: ``name`` has TYPO_LENGTH
    letters or more, and they are of nearly one length and letters. The one rule for what a
    typo rules out (``conflicts``) and whether it is read (``unread``, ``_corrected``)."""
    if len(name) < TYPO_LENGTH or abs(len(name) - len(word)) > 2:  # cheap to rule out first
        return False
    total = len(name) + len(word)  # letters in one and not the other bound ratio from above, cheaply
    if (total - (_letters(name) ^ _letters(word)).bit_count()) / total < TYPO_RATIO:
        return False
    matcher = difflib.SequenceMatcher(None, name, word)  # so does quick_ratio, less cheaply
    return matcher.quick_ratio() >= TYPO_RATIO and matcher.ratio() >= TYPO_RATIO
