#!/usr/bin/env python3
"""Render the bundled demo forum into examples/demo_forum/ (the web root the local server serves).

The forum is a small, made-up freeski community ("Sidehit"): one sub-forum, "Freeskiing Discussion",
written for forumtune. All text below is original. The markup follows a newschoolers-style layout
(thread rows, posts, quotes, signatures, edit notices) that the scraper's demo site profile is
written against, and it deliberately carries the usual forum artifacts the cleaner must remove.

Stdlib only and deterministic: running it twice gives byte-identical output.

    python scripts/make_demo_forum.py [--out examples/demo_forum]

Content conventions in THREADS below:
  * a thread is Thread(title, starter, opening post, replies, mod_note=None, same_as=None); same_as is
    the title of an earlier thread that asked the same question (a re-asked question, as forums are
    full of): same_questions.json, written beside the pages, lists those threads by URL
  * a reply is (author, text) or (author, text, quoted) where `quoted` is the index in the thread of
    the earlier post it quotes (0 = opening post); quotes of quoting posts nest, two deep at most
  * text is plain text; "\\n" becomes <br>; <b>, <i> and <a href=URL>..</a> pass through as HTML;
    everything else is HTML-escaped (so & " ' come out as &amp; &quot; &#39;); BBCode and emoji
    shortcodes are left as typed; {{mod:...}} becomes a <div class="mod-note"> inside the body
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import re
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "examples" / "demo_forum"

SITE_NAME = "Sidehit"
FORUM_SLUG = "freeski"
FORUM_NAME = "Freeskiing Discussion"
FIRST_THREAD_ID = 1001
FIRST_POST_ID = 50001
POSTS_PER_PAGE = 8
THREADS_PER_PAGE = 20
EDIT_ONE_IN = 11  # one in eleven of the longer posts: roughly one post in twelve overall
FIRST_DAY = dt.datetime(2019, 1, 7, tzinfo=dt.UTC)
DAYS_BETWEEN_THREADS = 28.5
LAST_YEAR = 2025

SAME_QUESTIONS = "same_questions.json"  # beside the pages, linked from none: the crawl never sees it
ROBOTS_TXT = "User-agent: *\nDisallow: /members/\nCrawl-delay: 0\n"

# Users with a signature; it is shown under every one of their posts (same mini-markup as posts).
SIGNATURES = {
    "bootfitter_dan": "Boot fitter since 2006 | Your foot is not a shoe size.",
    "tuningtom": "Wax on, scrape off, brush it out. <a href=https://www.example-skishop.com/guides/tuning-101>My home tuning guide</a>",
    "avy_anna": "Avy course instructor & part-time patroller. Beacon, shovel, probe, partner, plan.",
    "parkrat_jules": "park crew 2019-2023 | \"if you're not falling you're not learning\"",
    "coach_marek": "Level 3 instructor. Ski with your feet, not your shoulders.",
    "filmer_ford": "[url=https://vids.example-skitube.com/c/fordfilms]Ford Films[/url] | new edit dropping soon",
    "jibjesus": ":cool: rails > groomers :cool:",
    "wasatch_wes": "Alta / Snowbird / Brighton. Stuck in the canyon traffic since 2011.",
    "steezy_steph": "Quiver: 112 pow twin, 98 daily, 86 park. <i>sponsored by instant ramen</i>",
    "dad_on_skis": "3 kids, 1 minivan, 0 powder days to myself",
    "rail_slayer": "IG: @rail_slayer_not_real | shop team, Hill Street Boards",
}


@dataclass(frozen=True)
class Thread:
    title: str
    starter: str
    text: str
    replies: list
    mod_note: str | None = None
    same_as: str | None = None  # the title of an earlier thread that asks the same question


# ---------------------------------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------------------------------

# fmt: off
THREADS = [
    Thread(
        "Best all-mountain ski for the east coast?",
        "powderhound22",
        "Moving to Vermont for work this fall and my 108 underfoot pow ski is not going to cut it on the ice. "
        "Looking for one ski that can handle hardpack most days but still be fun when we get a real storm. "
        "I'm 5'10, 170 lbs, ski mostly groomers and trees, some park laps. Budget is around $600, used is fine. "
        "What would you guys get?",
        [
            ("skibum99", "Something in the 88-96 underfoot range with a bit of metal. Metal makes a huge difference on scraped-off groomers, it damps out the chatter. Anything narrower and you'll hate it in the trees after a storm."),
            ("icecoast_ian", "Been skiing Vermont for 15 years. Honestly the ski matters less than the tune. Get a 3 degree side edge and keep them sharp and almost anything around 90-95 will hold.\nThat said, stay away from full rocker, you need camber underfoot for ice."),
            ("vermont_vic", "This. I'd add that \"a bit of metal\" doesn't have to mean a plank. Lots of the newer 90-something skis have a partial metal layer underfoot and are still playful in the trees.\nDemo days in December are free, go try a few.", 1),
            ("gaper_greg", "just get a 100 and deal with it lol"),
            ("powderhound22", "Good call on the tune, my current skis have never been touched since I bought them. What length should I be looking at? I'm on 184s now."),
            ("tuningtom", "At 5'10 / 170 a 177-180 is the sweet spot if you want to be quick in tight trees. Go 184 only if it's a forward-mounted twin or you really like speed on the groomers. And get those edges done before you blame the ski, dull edges on ice feel like skiing on butter knives."),
            ("treeski_tina", "Second the shorter length for eastern trees. The glades up north are tight and you'll be making a lot of quick turns. I went from 184 to 177 and it was night and day."),
            ("icecoast_ian", "Also check the ski swaps in October/November. Last year's 90-something with metal for $300 is easy to find, then spend the rest on a proper tune and a boot fitter."),
            ("sendit_sam", "+1 on swaps"),
            ("vermont_vic", "one more thing: <a href=https://www.example-skishop.com/events/demo-days>demo day calendar</a> for northern VT, most of them are in early December."),
            ("powderhound22", "Ended up grabbing a used 96 with a metal layer at the swap for $280, 178cm. Took it in for a 1/3 tune. Will report back after the first ice day. Thanks all :D", 7),
            ("skibum99", "Nice pickup. Report back after a January rain-freeze cycle, that's the real test :lol:"),
        ],
    ),
    Thread(
        "First time setting DIN on my own, what number?",
        "noodle_legs",
        "Bought a pair of used skis with bindings already mounted and the shop near me wants $40 just to adjust them. "
        "I'm 165 lbs, 5'9\", 24 years old, and I'd call myself a type 2 skier. "
        "The bindings are set to 9 right now which feels high. Is there a chart I can use or should I just pay the shop?",
        [
            ("skibum99", "DIN charts are easy to find but you also need your boot sole length (it's printed on the side of the heel of your boot, in mm). Weight + height + age + skier type + BSL gives you the number. For your stats as a type 2 you'll probably land somewhere around 6 to 7."),
            ("tuningtom", "Pay the shop the first time. They don't just turn the screw, they check forward pressure and that the toe height is right for your boot. If forward pressure is off, the DIN number means nothing.\nAfter that you can tweak it yourself if you change your mind about the setting."),
            ("gaper_greg", "I run mine at 12 cause I don't want to prerelease. Never had an issue."),
            ("physio_lena", "Respectfully, this is how people end up in my clinic. Bindings that don't release when they should are a classic cause of knee injuries. Set it for your weight and ability, and only go up half a number at a time if you're actually prereleasing.", 3),
            ("noodle_legs", "ok so 9 is probably way too high for me then. Where's the BSL on the boot exactly?"),
            ("bootfitter_dan", "On the outside of the heel, molded into the shell. It'll be a number like 305mm or 298. Don't use your mondo size (the 26.5 or whatever), the binding cares about the actual length of the sole."),
            ("sendit_sam", "+1 to pay the shop. $40 is cheaper than an ACL"),
            ("skibum99", "Yep. And type 3 / 3+ is for people skiing fast and aggressive all the time, not for people who want to look cool with a high number. Being honest about your skier type is the whole point of the chart.", 4),
            ("noodle_legs", "Took it to the shop, they set me at 6.5 and adjusted the forward pressure which was apparently way off. Thanks guys."),
        ],
    ),
    Thread(
        "Boots killing my shins, is it the boot or me?",
        "backseat_barry",
        "Got new boots this season (flex 110, 26.5) and after two runs my shins are on fire, like a bruise right on the front. "
        "I crank the buckles pretty tight because my heel lifts otherwise. My old boots never did this. "
        "Do I need new boots or is this a technique thing?",
        [
            ("bootfitter_dan", "Shin bang is almost always a fit problem first and a technique problem second. Heel lift + tight buckles = the boot is probably too big. Pull the liner out, put your foot in the empty shell with your toes just touching the front. How many fingers fit behind your heel?"),
            ("backseat_barry", "Just tried it, I can fit like 3 fingers, maybe a bit more."),
            ("bootfitter_dan", "That's a size too big, maybe more. A performance fit is 1-1.5 fingers (about 10-15mm). With 3 fingers your foot slides around and your shin slams the tongue every time you flex. Buckles can't fix volume.", 2),
            ("coach_marek", "Also check the power strap. A lot of people leave it loose or wrap it wrong. It should be snug around the top of the cuff and does more for shin contact than the top buckle."),
            ("skibum99", "Did you buy online based on your sneaker size? Asking because 90% of these threads start that way lol"),
            ("backseat_barry", "...yes"),
            ("gaper_greg", "lol"),
            ("physio_lena", "If the bruising is deep and it's still sore a few days after skiing, give it a break until it calms down. Shin bang can turn into an irritation of the bone lining that lingers for weeks if you keep hammering it."),
            ("bootfitter_dan", "Options in order of cost:\n1) Tongue shim or a booster strap to take up volume (band-aid).\n2) Aftermarket foam liner (decent fix for half a size).\n3) Sell them and get properly fit.\nWith 3 fingers I'd honestly go with 3.\nGood explainer on shell fits: <a href=https://www.example-bootlab.com/guides/shell-fit>shell fit guide</a>"),
            ("coach_marek", "On the technique side: if you ski in the backseat you also bang your shins every time you get thrown forward. Keep your shins gently pressed into the tongues the whole turn, not slapping in and out.", 0),
            ("backseat_barry", "Username checks out I guess :rolleyes: going to a fitter on Saturday."),
            ("icecoast_ian", "Good move. Bring the socks you ski in, thin ones. Thick socks make a loose boot worse, not better."),
            ("backseat_barry", "Update: fitter put me in a 25.5 with a narrower last, heat molded the liners and added a footbed. Skied Sunday, zero shin pain. Can't believe I skied the wrong size for two seasons."),
            ("bootfitter_dan", "Love these updates. Enjoy the new feet!"),
        ],
    ),
    Thread(
        "How do I learn nose butters?",
        "tabletop_theo",
        "I've been lapping the park for a year and can do 3s and basic rails, but butters look like magic to me. "
        "Every time I try to press the nose I either wash out or catch an edge. "
        "What's the progression to learn nose butters? Does ski choice matter?",
        [
            ("butter_queen", "Start with nose and tail presses going straight on a mellow green. Feet about hip width, get your hips over the front of your bindings until the tail lifts. Hold it for a few seconds. Once that's comfy, start adding a little rotation while in the press."),
            ("parkrat_jules", "Ski choice matters a LOT. A soft twin mounted near center presses easily, a stiff cambered ski mounted traditional basically fights you. What are you on?"),
            ("tabletop_theo", "Stiff-ish all mountain twin, mounted on the line, 181."),
            ("parkrat_jules", "Yeah that's why. You can still learn on it but it'll be a workout. Move the bindings forward a couple cm if you have adjustable ones.", 3),
            ("butter_queen", "The edge catching thing: keep the ski FLAT while you're pressing. People tip onto an edge as they lean forward. Think of pushing your shins into the tongues and your hips forward, not your upper body down."),
            ("jibjesus", "nose butter 180 on the flat is the first one to learn. Press, turn shoulders 90, let the tails swing around, land switch. Then do it the other way. Sounds easy, takes a whole season :D"),
            ("steezy_steph", "Also: film yourself. What feels like a huge press is usually a tiny press on video lol"),
            ("sendit_sam", "this"),
            ("tabletop_theo", "Flat ski was the key. Tried it today on the bunny hill and got a few 180s around, still sketchy but actually rotating now. Thanks!"),
            ("butter_queen", "Nice!! Next step is the nose butter 360, same thing, just hold the press longer and let your shoulders lead. Give it a couple weeks."),
        ],
    ),
    Thread(
        "Avalanche course: worth it before my first touring season?",
        "freshtracks_fi",
        "I just bought a touring setup plus a beacon, shovel and probe. My plan was to start with resort uphill and then go out with some friends who've done a bit of touring. "
        "Is an avalanche course really necessary before the first season or can I learn as I go? The intro courses here are like $400.",
        [
            ("avy_anna", "Short answer: yes, take the course. The gear is pretty useless if you don't know how to use it and, more importantly, how to avoid needing it. An intro course covers reading the forecast, terrain selection, basic snowpack and companion rescue. $400 is cheap for what it teaches."),
            ("couloir_cam", "Your friends who've \"done a bit of touring\" are the scary part. Groups where everyone knows a little are exactly the ones that get caught. Take the course WITH them if you can."),
            ("freshtracks_fi", "Fair point, they've never taken one either. Would a free online course be enough to start?", 2),
            ("avy_anna", "Online stuff is a great start, but you can't learn a beacon search from a video. The field day where you run scenarios under time pressure is the part that actually saves lives. Do the online stuff now, book the field course before you go past the resort boundary.", 3),
            ("tele_ted", "Resort uphill is a great idea for the first few weeks anyway. Learn transitions, skin track etiquette, how to use your heel risers. None of that needs avalanche terrain."),
            ("couloir_cam", "also practice with your beacon in a park with a buddy, bury one in a backpack, take turns searching. 10 minutes every few weekends makes a big difference. Drill sheet: <a href=https://avy-course.example.org/drills/beacon-park>beacon park drills</a>"),
            ("gapersday", "+1 for the course, did mine last year and realized how much I didn't know"),
            ("avy_anna", "One more thing: in a lot of places the rescue course is separate from the level 1. If budget is tight, do the rescue day first and the full level 1 next winter. Decent overview of how the levels fit together: https://avy-course.example.org/course-levels"),
            ("freshtracks_fi", "Booked a course for early January. Doing resort uphill until then. Thanks for not just telling me to send it lol"),
            ("sendit_sam", "I would never"),
            ("avy_anna", "Good plan. Read the forecast every day even when you're not going out, it trains your brain to follow how the snowpack changes over the season.", 9),
        ],
    ),
    Thread(
        "Whistler in February: where to stay and what to ski?",
        "liftline_lou",
        "Four of us are going to Whistler for a week in mid February, all solid intermediate to advanced. "
        "Where's the best area to stay without paying crazy money? And what are the can't-miss runs? We like trees and some easy-ish off-piste.",
        [
            ("whistler_kat", "Lived here 6 seasons. Creekside is quieter and usually cheaper than the Village and has its own gondola. Places further south are cheaper still but you'll rely on the bus. If you want nightlife, stay in the Village."),
            ("whistler_kat", "Runs: on Blackcomb, hike the short ladder into the bowls if it's open, super fun. On the Whistler side, Harmony and Symphony for easy off-piste and glades. When it's foggy stay in the trees lower down.\nGet on the first lift, the lineup at the Village gondola after 9 is brutal."),
            ("liftline_lou", "Amazing, thanks. Is February usually foggy? I read somewhere visibility is bad a lot.", 2),
            ("whistler_kat", "It can be. Coastal mountains = fog and flat light, especially up high. On those days ski the trees below treeline and bring a low-light lens. Snow report with the webcams: https://www.example-snowforecast.com/resorts/whistler"),
            ("powderhound22", "The Peak 2 Peak gondola is worth doing once even if it's just to connect the mountains. And eat on-mountain before noon or after 2, it's a zoo at lunch."),
            ("apres_andy", "Apres at the base of the Village gondola is mandatory. Also hit the grocery store so you don't spend $30 on every lunch :D"),
            ("skibum99", "Only rent a car if you stay outside the village, parking is pricey."),
            ("liftline_lou", "Booked a condo in Creekside, 5 min walk to the gondola. Thanks Kat!"),
        ],
        mod_note="Moved from Travel by admin",
    ),
    Thread(
        "Hot wax at home: what iron and wax do I need?",
        "slushy_sara",
        "Tired of paying $30 every time my skis need wax. What's the minimum kit to hot wax at home? "
        "Can I use an old clothes iron? And how often should I be doing it?",
        [
            ("tuningtom", "Minimum kit: an iron, a bar of universal wax, a plastic scraper and a nylon brush. Something to hold the skis (rubber bands to hold the brakes up and two sturdy chairs works fine to start).\nA proper wax iron is nice because the temperature is stable, but a cheap clothes iron with no steam holes works if you keep it moving."),
            ("slushy_sara", "why no steam holes?"),
            ("tuningtom", "The holes give you uneven hot/cold spots and wax gets into them and burns. Also never use it on clothes again after :lol:", 2),
            ("icecoast_ian", "Set the iron just hot enough that the wax drips smoothly without smoking. If it smokes you're too hot and you're cooking your base."),
            ("corn_snow_carl", "Drip wax onto the base, spread it in one or two slow passes tip to tail, let it cool completely (30 min minimum, overnight is better). Then scrape until you can barely see any wax and brush tip to tail. The wax you want is IN the base, not on it. <a href=https://vids.example-skitube.com/watch?v=wax_basics_42>This video</a> shows the whole thing in 6 minutes."),
            ("slushy_sara", "Is universal wax good enough or do I need temperature-specific stuff?"),
            ("tuningtom", "Universal is fine for 95% of recreational skiing. Temp-specific matters if you race or ski really cold snow (below about -10C) where a harder cold wax glides better. Skip fluoro waxes, they're banned in racing now and nasty for the environment anyway.", 6),
            ("gaper_greg", "I just rub on paste wax in the parking lot, works fine"),
            ("corn_snow_carl", "Rub-on is a nice top-up on a trip but it's gone in a few runs. Hot wax lasts way longer."),
            ("tuningtom", "Frequency: every 3-5 ski days, or when your bases start looking white and chalky near the edges. [b]That dry look means the base is starving.[/b]"),
            ("slushy_sara", "Ordered the iron, a big bar of universal and a scraper. Found this for the brush: https://www.example-skishop.com/brushes/nylon-combo"),
            ("bluebird_bella", "Get a scraper sharpener too, a dull plastic scraper = hard work"),
            ("slushy_sara", "Did my first wax last night. Way easier than expected and I actually glide past people on the cat track now :D"),
        ],
    ),
    Thread(
        "Switch 360 keeps under-rotating",
        "shredhead_nico",
        "I can land regular 3s both ways pretty consistently on medium jumps. Switch 3s though, I always come around to like 270 and land sideways. "
        "I'm taking off switch and spinning toward my blind side I think? Any tips?",
        [
            ("parkrat_jules", "Most people learn switch 3s the \"easy\" way first, where you're looking downhill over your shoulder on takeoff. If you're spinning blind you're making it harder than it needs to be. Which way do you spin regular?"),
            ("shredhead_nico", "Left. And switch I go... also left I guess, which is where I can't see the landing until late."),
            ("parkrat_jules", "Yeah try the other way. Switch 3s where you're already looking at the landing over your shoulder are way more natural.", 2),
            ("rail_slayer", "Also, under-rotating is usually not setting the spin on the lip. Wind up before the lip, then unwind as you pop. Trying to add rotation once you're in the air doesn't work."),
            ("steezy_steph", "Practice switch 180s on side hits until they feel easy, then add a bit more. Most of the 3 is just committing to the setup."),
            ("jibjesus", "send more speed too. Switch people always go slow because it feels scary, then they can't get around. :cool:"),
            ("shredhead_nico", "Wind up before the lip is what I'm missing I think. I've been trying to start the spin in the air.", 4),
            ("rail_slayer", "Yep, classic. Your shoulders decide the rotation before you leave the ground. Once you're airborne you can slow it down by opening up, but you can't really speed it up.", 7),
            ("shredhead_nico", "Landed 3 clean ones today spinning the other way. Feels like cheating lol"),
        ],
    ),
    Thread(
        "ACL reconstruction, when can I ski again?",
        "yardsale_yuki",
        "Tore my ACL in March on a landing, surgery was in May (patellar tendon graft). "
        "My surgeon says 9 months minimum, which means basically missing next season. "
        "Anyone have experience coming back sooner? I'm doing PT 3x a week and feel pretty good already.",
        [
            ("physio_lena", "Physio here (not YOUR physio, so take it as general info). The 9 month number isn't your surgeon being overly careful, the graft goes through a weak phase while it remodels and re-injury rates are a lot higher for people who go back before 9 months. Feeling good at 4 months is normal and is exactly when people get in trouble."),
            ("yardsale_yuki", "Ugh. I know you're right. It just feels so slow."),
            ("couloir_cam", "Did mine in 2017, went back at 7 months because I was impatient, retore it the same season. Second surgery and rehab was twice as bad. Wait."),
            ("physio_lena", "What helps is focusing on criteria, not just the calendar. Ask your PT about return-to-sport testing: single-leg hop tests, strength compared to the good leg (you want 90%+), and how the knee handles cutting drills. Time AND criteria.\n<a href=https://www.example-physio.net/acl/return-to-sport>Overview of the common tests</a>"),
            ("mogul_mike", "9 months here too, first day back was the best day of my life. Spent it cruising groomers. Didn't touch bumps till the next season."),
            ("yardsale_yuki", "Did you guys wear a brace when you came back?"),
            ("couloir_cam", "I did, mostly for my head honestly. My surgeon said the evidence for braces after reconstruction is pretty mixed."),
            ("physio_lena", "Some people find it helps with confidence, but it doesn't replace strength. If you get one, get it fitted properly and make sure it works with your boot cuff height.", 6),
            ("sendit_sam", "Strength train like your life depends on it. Hamstrings especially."),
            ("yardsale_yuki", "If I do come back next spring, what should the first days look like?"),
            ("coach_marek", "Groomers you know, good visibility, good snow. Short days, and stop before you're tired because that's when technique falls apart. No park, no bumps, no deep crud for a while. Then build up."),
            ("physio_lena", "Also get your bindings checked and set correctly. A lot of ACL injuries happen in slow backward twisting falls where the binding doesn't release, so the right DIN matters. Don't crank it up \"just in case\"."),
            ("freshtracks_fi", "Also read up on backward falls: keep your arms forward, hips above knees, and don't try to sit down and recover when you're already falling back."),
            ("yardsale_yuki", "Bindings were set at 8 when I got hurt, I'm probably a 6 on the chart lol. Lesson learned.", 12),
            ("couloir_cam", "Yeah that probably didn't help. Good that you know now.", 14),
            ("gapersday", "Sending healing vibes. Do the stationary bike a ton, it helps with range of motion."),
            ("yardsale_yuki", "Update a year later for anyone who finds this thread: I went back at 10 months after passing the return-to-sport tests. First 4 days on groomers only and felt totally normal by the end of the season. Glad I waited."),
        ],
    ),
    Thread(
        "Action cam vs phone for filming ski edits?",
        "tabletop_theo",
        "Want to start filming our park sessions and making little edits. Is a dedicated action cam worth it or can I just use my phone? "
        "Budget is about $300. Also how do you keep batteries alive in the cold?",
        [
            ("filmer_ford", "Depends on what you're filming. Follow cam and POV = action cam, no question (wide angle, stabilization, you can crash with it). Filming your buddy off a jump from the side = phone is honestly better, the zoom and image quality beat an action cam at distance."),
            ("tabletop_theo", "So kinda both? lol"),
            ("filmer_ford", "Pretty much. My early edits were a phone on a cheap tripod for jumps and an action cam on a pole for follow cam.", 2),
            ("frostbite_felix", "Batteries: keep spares in an inside pocket close to your body and swap as soon as the camera warns you. Cold batteries can lose half their capacity. Same with phones, keep them in your jacket between shots."),
            ("filmer_ford", "Another tip: shoot 60fps so you can slow down the landings, and film from below the lip looking up, it makes jumps look way bigger. Film the whole trick with some run-in and ride-away, don't cut it tight. <a href=https://vids.example-skitube.com/c/fordfilms>My channel</a> has some examples."),
            ("sendit_sam", "sick, post the edit when it's done"),
            ("rail_slayer", "Gimbal for the phone is worth it if you do follow cam with it. And please hold the phone horizontal :rolleyes:"),
            ("tabletop_theo", "Haha noted. Grabbed a used action cam for $150 and a pole mount, phone for the rest. First edit: https://vids.example-skitube.com/watch?v=demo_ttheo01"),
        ],
    ),
    Thread(
        "Buying used skis: what should I check?",
        "gapersday",
        "Found a pair of 2-year-old skis with bindings on a marketplace listing for $250. Going to look at them tomorrow. "
        "What should I check before I hand over the cash?",
        [
            ("tuningtom", "Bases: look for core shots (gouges down to the core, you'll see a different color). Edges: run a finger along them, look for cracks or missing chunks. Sidewalls: any delamination, especially near tips and tails. Put the skis base to base and squeeze, the camber should spring back evenly."),
            ("bootfitter_dan", "Check that the bindings can be adjusted to your boot sole length. If they're mounted for a much bigger or smaller boot you may need a remount, which costs money and adds holes."),
            ("skibum99", "Also look up the binding model and make sure it's not on the shops' \"no longer indemnified\" list. Shops won't touch bindings that are too old."),
            ("gapersday", "How do I check if it fits my BSL without my boots?", 2),
            ("bootfitter_dan", "Bring your boots. Seriously, just click in right there. The toe should be snug and the heel should close with the forward pressure indicator in the right spot.", 4),
            ("gaper_greg", "offer 200 cash, always works"),
            ("gapersday", "Got them for $220, bases were good, one tiny core shot on the tail which the shop said was an easy fix. Bindings fit my boots. Thanks!"),
        ],
    ),
    Thread(
        "Layering for really cold days?",
        "groomer_gary",
        "Heading on a mid-January trip where the forecast says -25C in the mornings. "
        "I usually ski in a hoodie under my shell and I'm frozen by 11. "
        "What layers do you actually wear on the coldest days? Not trying to spend a fortune.",
        [
            ("frostbite_felix", "No cotton, that's rule one. The hoodie is your problem: it soaks up sweat on the first run and then it's a cold wet towel for the rest of the day.\nMy cold-day setup: merino or synthetic base layer, a fleece, a light puffy, then the shell."),
            ("icecoast_ian", "Ice coast -25 with wind is my normal January lol. Add a neck gaiter or balaclava that covers your nose, a helmet liner, and put hand warmers in your mitts BEFORE your hands get cold."),
            ("groomer_gary", "Merino is pricey though. Is synthetic just as good?"),
            ("frostbite_felix", "Synthetic is totally fine and dries faster. Merino just stinks less on a multi-day trip. On a budget, the house-brand synthetic base layers from any outdoor store work great.", 3),
            ("bluebird_bella", "Legs get forgotten. Thin long johns under your ski pants make a huge difference. And don't wear two pairs of socks, it cuts circulation and your toes freeze faster."),
            ("bootfitter_dan", "Yes on one thin pair of socks. Boots need to be dry in the morning too, a boot dryer overnight helps a lot."),
            ("apres_andy", "Also take breaks. Go in for a hot chocolate every hour or so, no shame"),
            ("gaper_greg", "jeans + flannel + beer jacket. worked in the 80s"),
            ("groomer_gary", "Went with synthetic base, fleece, my old puffy and the shell, plus a balaclava. Toasty all day, even on the chair in the wind. Thanks!"),
        ],
    ),
    Thread(
        "Goggle lens for flat light?",
        "bluebird_bella",
        "Every storm day I basically ski blind. I have a dark mirrored lens that's great in sun but useless when it's grey. "
        "What lens color actually helps in flat light? Is photochromic worth it?",
        [
            ("whistler_kat", "Look at the VLT number (visible light transmission). Sunny-day lenses are 10-15%, for flat light you want 50% or higher. Yellow, rose or amber tints add contrast. Handy <a href=https://www.example-skishop.com/goggles/lens-chart>lens chart</a>."),
            ("frostbite_felix", "Photochromic is nice if you only want one lens, but it's never as good as a dedicated low-light lens in a really dark storm. I carry a second lens in my pocket."),
            ("bluebird_bella", "Didn't know about VLT, mine is 12% lol. No wonder.", 1),
            ("skibum99", "Also anti-fog: never wipe the inside of the lens, you rub off the coating. And don't park your goggles on your forehead when you're sweaty, they fog instantly."),
            ("treeski_tina", "Storm days are tree days anyway. Trees give you contrast. Flat light in an open bowl is rough no matter what lens."),
            ("gaper_greg", "+1"),
        ],
    ),
    Thread(
        "Teaching my 5 year old to ski",
        "dad_on_skis",
        "Taking my daughter (5) skiing for the first time this winter. I'm a decent skier but have never taught anyone. "
        "Should I put her in lessons or teach her myself? Any gear I should get? I don't want to make her hate it on day one.",
        [
            ("coach_marek", "Instructor here: <b>put her in a lesson</b>, at least for the first couple of days. Kids listen to instructors way better than to parents, and you won't end up frustrated. Then ski with her in the afternoon and reinforce what she learned."),
            ("dad_on_skis", "Makes sense. She definitely doesn't listen to me lol"),
            ("slushy_sara", "Keep it short and fun. 1-2 hours max the first day, then hot chocolate. End while she's still having fun so she wants to come back."),
            ("coach_marek", "Gear: boots that actually fit (not 2 sizes big to grow into), a helmet, warm mitts. No poles for a while. Rentals are totally fine for the first season."),
            ("bluebird_bella", "A tip connector (the little clip that holds the ski tips together) helps some kids hold a wedge, but don't rely on it for long."),
            ("dad_on_skis", "What about those harness leash things I see?"),
            ("coach_marek", "They have their place for the really little ones, but a lot of kids end up leaning back against the leash and never learn to balance on their own. I'd skip it for a 5 year old.", 6),
            ("gaper_greg", "ski with her between your legs, thats how my dad did it"),
            ("coach_marek", "Please don't, it wrecks your back and she learns nothing about balance. Ski backwards in front of her instead if you can.", 8),
            ("treeski_tina", "Snacks. Bring way more snacks than you think. A hungry kid is a done kid."),
            ("dad_on_skis", "Update: 2 day lesson went great, she's doing pizza turns down the green by herself and asks every morning if we're going skiing :D"),
            ("coach_marek", "Best update possible. Next milestone is parallel turns, give it another season."),
        ],
    ),
    Thread(
        "Moguls: my legs die after three bumps",
        "apres_andy",
        "I can ski any groomer but as soon as I hit a mogul run I'm done after like 3 bumps. "
        "Legs burning, getting thrown back, then I traverse across the whole run. What am I doing wrong?",
        [
            ("mogul_mike", "You're probably skiing them stiff and trying to turn on the steep face of the bump. Turn on top of the mogul (or on its shoulder), let your legs fold up as you go over it, and push your feet back down into the trough after. Absorb and extend, like a suspension."),
            ("coach_marek", "Look 2-3 bumps ahead, not at your tips. Keep your hands in front of you: every pole plant should move you down the hill, not pull your shoulders back."),
            ("apres_andy", "Turn on top makes sense, I definitely try to turn in the trough.", 1),
            ("mogul_mike", "That's why your legs die. Turning in the trough means you slam into the next bump at full speed. On top, your tips and tails are off the snow and the skis pivot super easily.", 3),
            ("icecoast_ian", "Practice on a mellow bump run when the bumps are soft (spring is perfect). Icy bumps in January are a terrible classroom."),
            ("jibjesus", "or just go in the park lol"),
            ("mogul_mike", "Also: [i]slow down[/i]. Nobody skis bumps well at first by going fast. Pick a line, do 5 turns, stop, breathe, repeat."),
            ("physio_lena", "Fitness helps too. Bumps are basically a squat-jump interval workout. Some single leg squats and box jumps in the fall make a real difference."),
            ("sendit_sam", "bumps are cardio with extra steps"),
            ("apres_andy", "Took a bump clinic on the weekend and the instructor said exactly what you guys said: turn on top, hands forward. Made it down a whole run without stopping. Legs still burning tho :lol:"),
        ],
    ),
    Thread(
        "Japan trip: Niseko or Hakuba?",
        "treeski_tina",
        "Finally doing a Japan trip! 10 days in late January. Can't decide between Niseko and Hakuba. "
        "We're 2 advanced skiers who love trees and deep snow and don't care much about nightlife. Which would you pick and why?",
        [
            ("japow_jun", "Both are great. Niseko: the most consistent deep snow, easy for English speakers, gates into off-piste terrain, but busy and pricey. Hakuba: a bunch of resorts spread along a valley, steeper and more varied terrain, bigger mountains, feels more like Japan. Snow is a bit less reliable than Hokkaido. Check the <a href=https://www.example-snowforecast.com/japan/hokkaido/history>snow history</a> for late January."),
            ("treeski_tina", "Trees and deep snow, so Niseko?", 1),
            ("japow_jun", "For pure deep trees, Hokkaido in general. But don't only look at Niseko. Rusutsu is about 40 min away and has amazing tree skiing with far fewer people. Lots of people base in Niseko and do day trips."),
            ("alpsgoat", "Did Hakuba 2 years ago, got skunked for the first 4 days (rain to the base), then it dumped 80cm. That's Japan, you can get unlucky anywhere."),
            ("powderhound22", "Niseko for your first trip. Hokkaido snow in January is the lightest stuff I've ever skied."),
            ("japow_jun", "<b>Important:</b> respect the gate system and the resort rules about off-piste. Ropes are there for a reason and patrol can pull your pass. Outside the gates you need full avy gear and a partner."),
            ("treeski_tina", "How's getting around? Do we need a car?"),
            ("japow_jun", "Niseko: shuttle buses between the villages are fine, the bus from the airport takes about 2.5-3h. Hakuba: buses work too, but a car gives you a lot more freedom to chase snow across resorts. Roads are well plowed but drive carefully, it snows constantly.", 7),
            ("apres_andy", "Eat at the convenience stores, I'm serious. Egg sandwiches and fried chicken at 7am before first chair. Elite."),
            ("gaper_greg", "this"),
            ("frostbite_felix", "Bring a face mask or gaiter, Hokkaido chairlifts in January are COLD and long."),
            ("treeski_tina", "Decided: Niseko for 7 days with day trips to Rusutsu, then 3 nights in an onsen town. Thanks everyone :D"),
            ("japow_jun", "Perfect plan. Soak in an onsen after every ski day and you'll never want to leave."),
        ],
    ),
    Thread(
        "Getting sponsored: how does it actually work?",
        "jibjesus",
        "I'm 17, been skiing park for 4 years, can do 5s both ways and most of the rails in our park. "
        "How do people actually get sponsored? Do I need to do comps or just make edits? Do I email companies? Kinda lost.",
        [
            ("rail_slayer", "Start local. Almost every sponsored skier I know started with their local shop. Be in the shop, be nice, buy your stuff there, ask if they have a team. Shop teams get discounts and sometimes flow from brands."),
            ("parkrat_jules", "Brands want two things: people who make their product look good (edits, photos, results) and people who make the brand look good as humans. Being known as a nice person at your home hill matters more than you'd think."),
            ("jibjesus", "what does flow mean exactly?", 1),
            ("rail_slayer", "Free or heavily discounted gear, no money. That's the first level for almost everyone. Sometimes a pro deal (a big discount) comes before that.", 3),
            ("steezy_steph", "<i>Edits > comps</i> for most brands these days. Make short, well edited clips, 1-2 min, good music, only your best stuff. A 6 minute edit of you doing 50-50s is not it lol"),
            ("filmer_ford", "This. Also film from good angles and in good light, the same trick looks 3x better from the right spot. Keep the sponsor-me edit under 2 minutes with your best shot in the first 10 seconds.", 5),
            ("gaper_greg", "just get 10k followers"),
            ("parkrat_jules", "Followers help with some brands, but a lot of them care more about who you are on the hill. Plenty of people with big accounts get nothing.", 7),
            ("sendit_sam", "also watch out for the \"ambassador\" programs where you pay to get a discount code. thats not sponsorship thats marketing"),
            ("rail_slayer", "Huge +1. If a brand asks you to pay to be on the team, that's not a team."),
            ("jibjesus", "ok so: local shop, make a short edit, be nice, don't pay for fake ambassador stuff. Should I do comps at all?"),
            ("parkrat_jules", "Do some! Local slopestyle comps are fun, you meet people, and results are something concrete to put in an email. Just don't ONLY do comps."),
            ("steezy_steph", "When you email a brand: short message, who you are, where you ski, link to the edit, results if any, what you're asking for. No essays."),
            ("jibjesus", "Making an edit this season then. Will post it here."),
            ("filmer_ford", "Hit me up if you want help filming, always down to film park laps."),
            ("jibjesus", "Update for the thread: the shop put me on their team! 30% off and they're helping me send an edit to a ski brand. https://vids.example-skitube.com/watch?v=demo_jj_shopteam :D"),
        ],
    ),
    Thread(
        "Pre-season fitness program?",
        "dawnpatrol_dee",
        "Season starts in 8 weeks and I've been pretty lazy all summer. "
        "What should I be doing to get my legs ready so I don't blow a knee on day one? I have access to a gym.",
        [
            ("physio_lena", "8 weeks is enough to make a difference. 2-3 strength sessions a week: squats, split squats or lunges, single-leg deadlifts, step-ups. Add hamstring work (Nordic curls if you can), hamstrings help protect the ACL. Core & side planks too."),
            ("coach_marek", "Balance work too. Single-leg stuff on an unstable surface, or just stand on one leg with your eyes closed while brushing your teeth."),
            ("dawnpatrol_dee", "What about wall sits? My old ski club only did those.", 1),
            ("physio_lena", "Wall sits are fine but static. Skiing is dynamic, you're absorbing and extending all day. I'd rather see tempo squats and jump landings: learn to land quietly with your knees tracking over your toes.", 3),
            ("mogul_mike", "Cardio! Intervals on a bike. Bumps and bootpacks will kill you otherwise."),
            ("sendit_sam", "mountain biking all summer is the best ski training"),
            ("noodle_legs", "+1 for biking, did a summer of bike park and my legs were way better on the first ski days."),
            ("physio_lena", "And don't go from zero to 5 heavy sessions a week. Build up. Sore on day 2 is fine, injured in week 2 is not.\n[url=https://www.example-physio.net/ski-prep-8-weeks]Printable 8 week plan[/url]"),
            ("dawnpatrol_dee", "Made a little plan: 2x strength, 2x bike intervals, balance every day. Thanks!"),
        ],
    ),
    Thread(
        "First rails: box or flat down rail?",
        "bluebird_bella",
        "Want to start hitting features in the park this season. I'm comfortable on small jumps. "
        "Should my first features be boxes or rails? Any tips so I don't eat it?",
        [
            ("parkrat_jules", "Boxes first, wide flat ones. They're way more forgiving than a round rail. Ride straight on (50-50), skis flat, knees bent, eyes on the end of the box."),
            ("rail_slayer", "The #1 thing: keep your skis FLAT on the feature. Catching an edge on a box is how you get the box-to-the-face slam. Detune your edges underfoot a little, it makes them way less grabby."),
            ("bluebird_bella", "what does detune mean?", 2),
            ("tuningtom", "Dull the edges slightly with a gummy stone or file, usually just underfoot, or the whole ski for park-only skis. Keeps them from catching on rails and boxes. Don't do it to your ice skis lol", 3),
            ("jibjesus", "approach with a little more speed than feels comfortable. too slow and you stall and fall off the side"),
            ("steezy_steph", "Also watch a few people hit it first and see where they come in from. Most boxes have a sweet spot for the approach."),
            ("bluebird_bella", "Did 10 laps on the flat box today, didn't fall once! Still scared of the round rail but getting there."),
        ],
    ),
    Thread(
        "Powder technique for a groomer skier",
        "groomer_gary",
        "Got my first real powder day last weekend (40cm overnight) and it was humbling. "
        "I kept sinking, my tips would dive and I'd go over the handlebars. On groomers I'm solid. What's different about skiing powder?",
        [
            ("powderhound22", "The big one: weight evenly on both skis. On groomers you're used to pressuring the outside ski; in pow that ski dives and the other one floats up. Think of both skis as one platform."),
            ("treeski_tina", "Speed is your friend. Going slow in deep snow = sinking. Point them more down the fall line than you're comfortable with and the skis rise up."),
            ("groomer_gary", "Both feet equal, ok. Should I be leaning back to keep the tips up?", 1),
            ("powderhound22", "Nope, that's the classic mistake. Leaning back wears out your legs in 2 runs. Stay centered and let the ski shape do the work. Modern pow skis have tip rocker exactly so you don't need to lean back.", 3),
            ("wasatch_wes", "What skis were you on? A narrow carving ski in 40cm is hard mode. Rent something 105+ underfoot with tip rocker next time and it'll feel like cheating."),
            ("groomer_gary", "78 underfoot race-ish skis lol"),
            ("wasatch_wes", "Yeah, there's your answer. About half of it anyway."),
            ("coach_marek", "Rhythm: think of a bouncing motion, compress and extend, and the turn happens as the skis come up out of the snow. Short, linked turns in the fall line."),
            ("sendit_sam", "+1 rent fat skis"),
            ("powderhound22", "Find a run that's not too steep, ideally a mellow pitch with untracked snow at the side of the trail. Steep and deep is much harder to learn on."),
            ("groomer_gary", "Rented 108s for the next storm and stayed centered. Completely different day. I get it now :D"),
        ],
    ),
    Thread(
        "Touring bindings: pins or frame?",
        "liftline_lou",
        "Want to get into touring but also want to use the same skis at the resort most days. "
        "Frame bindings seem easy because they take my alpine boots, but everybody says pins. What's the real difference?",
        [
            ("couloir_cam", "Frame bindings: the whole frame lifts with your heel, so you're lifting a lot of weight every step and the pivot is in front of your toes, which feels weird. Pins: only your boot pivots at the toe, way lighter and more efficient uphill. If you're touring more than a couple of times a season, pins."),
            ("avy_anna", "Pins need a boot with tech inserts and a walk mode. That's the real cost: you probably need new boots too."),
            ("liftline_lou", "So I'd need new boots AND bindings? ugh.", 2),
            ("couloir_cam", "Or look at the hybrid bindings with a pin toe for the uphill and an alpine-style toe and heel for the down. Heavier than pure pins, but they ski like alpine bindings and release more like them too."),
            ("tele_ted", "Or go tele. Free your heel, free your mind. :cool:"),
            ("gaper_greg", "lol"),
            ("avy_anna", "Important: most pure pin bindings don't have the same release certification as alpine bindings. Fine for touring, but if you ski hard in the resort every day on them, be aware of that tradeoff."),
            ("couloir_cam", "Honestly: if you're 80% resort and 20% touring, a hybrid binding on your daily ski. If you catch the touring bug, get a dedicated light setup later (everybody does)."),
            ("sendit_sam", "2 setups is the answer to every question"),
            ("liftline_lou", "Went with hybrid bindings and a boot with a walk mode and inserts. Did my first skin up the resort yesterday, hooked already."),
        ],
    ),
    Thread(
        "Park skis vs all-mountain twin for a one-ski quiver?",
        "noodle_legs",
        "College student, can only afford one pair. I spend about half my time in the park and the other half ripping around the mountain, sometimes powder. "
        "Should I get a park ski or an all-mountain twin?",
        [
            ("steezy_steph", "All-mountain twin around 95-100 underfoot. It'll handle park jumps fine, ski the mountain better than a park ski and float a little in pow. True park skis are soft and narrow and feel noodly everywhere else."),
            ("parkrat_jules", "Agree, unless you're mostly on rails. Rails eat skis. If rails become a big part of it, pick up cheap used park skis as a second pair eventually."),
            ("noodle_legs", "Mostly jumps honestly, some boxes.", 2),
            ("steezy_steph", "Then all-mountain twin for sure. Mount it a bit forward of traditional, like -4 to -6 from center, good balance between spinning and skiing the mountain."),
            ("jibjesus", "my 100 underfoot twin does everything, park, pow, groomers. one ski quiver is real"),
            ("tuningtom", "Detune the tips and tails slightly and keep the edges underfoot sharp, so you can still hold an edge on groomers."),
            ("skibum99", "+1 to all of this"),
            ("noodle_legs", "Found last year's 98 twin on sale. Thanks all"),
        ],
    ),
    Thread(
        "What edge bevel for ice?",
        "corn_snow_carl",
        "Skiing mostly hardpack and ice in the northeast. My skis came with a 1 degree base / 2 degree side bevel from the factory. "
        "Would going to 3 degrees on the side help? And can I do it myself or is it a shop job?",
        [
            ("tuningtom", "A 3 degree side edge is very common for east coast skiers and racers, it gives you a more acute edge that bites harder on ice. Downside: it dulls a bit faster and is slightly less forgiving. I'd leave the base bevel at 1."),
            ("icecoast_ian", "Running 1/3 for years. Huge difference on boilerplate. Keep the base at 1 though, going to 0.5 made my skis hooky and nervous."),
            ("corn_snow_carl", "Can I change the side bevel at home with a file guide?", 1),
            ("tuningtom", "Yes. Get a 3 degree side edge guide, a good file (or diamond stones if you're close already) and go slow. Cut the sidewall back first if it sticks out past the edge, or the guide won't sit flat. Leave the base edge to the shop if you're new, that's the one that's easy to mess up.", 3),
            ("skibum99", "[b]Don't touch the base bevel yourself[/b]. Learned that one the hard way :rolleyes:"),
            ("vermont_vic", "After the bevel change, a quick pass with a fine diamond stone every couple of days keeps them sharp. Takes 5 min."),
            ("corn_snow_carl", "Got the 3 degree guide and did them last night. Holding way better on the morning groomers. Thanks tom"),
        ],
    ),
    Thread(
        "Utah: Cottonwood canyons or Park City for a week?",
        "frostbite_felix",
        "Group of 4 planning a week in Utah in early March. Two of us are experts, two are solid intermediates. "
        "We're torn between staying in Salt Lake and doing the Cottonwood canyons, or staying in Park City. Car or no car?",
        [
            ("wasatch_wes", "Local here. If the experts care about the skiing, Little Cottonwood (Alta, Snowbird) has the best terrain and snow in the state, no contest. Intermediates will be fine too, Alta has lots of great blue terrain. It's a different vibe than Park City though: less town, more skiing."),
            ("wasatch_wes", "Stay in Sandy or Cottonwood Heights and get a car. You can hit Little or Big Cottonwood (Brighton, Solitude) depending on the snow. Just know the canyon road closes for avalanche control after big storms and powder morning traffic is a mess. Go early."),
            ("frostbite_felix", "How early is early?", 2),
            ("wasatch_wes", "On a powder weekend, in the canyon by 7. Weekdays are better. Check the canyon road status and the avalanche forecast before you leave. Road status: https://www.example-roadreport.org/utah/canyons", 3),
            ("apres_andy", "Park City for the town, restaurants and apres. Skiing is good but more groomer-heavy. If two of your group want nightlife, PC is the better compromise."),
            ("powderhound22", "Heads up: Alta is skiers only, no snowboarders, in case anyone in your group rides."),
            ("frostbite_felix", "All skiers. And nobody cares much about nightlife tbh."),
            ("wasatch_wes", "Then Cottonwoods, easy. 3-4 days at Alta/Snowbird and a day at Brighton or Solitude for variety. Rent an AWD with good tires, the canyons sometimes require traction devices."),
            ("treeski_tina", "The Snowbird tram on a clear day is worth it alone. And there's a combined ticket that lets you ski Alta and Snowbird on the same day."),
            ("gaper_greg", "PC has a great brewery just saying"),
            ("sendit_sam", "lol"),
            ("frostbite_felix", "Booked a place in Sandy and an AWD. Going with the Cottonwoods. Thanks Wes"),
        ],
    ),
    Thread(
        "Cold toes: are heated socks worth it?",
        "slushy_sara",
        "My toes go numb every single day, even when it's not that cold. "
        "Thinking about heated socks but they're like $250. Are they worth it or is something else going on?",
        [
            ("bootfitter_dan", "Cold toes are often a fit issue. A boot that's too tight over the top of the foot cuts off circulation, and a boot that's too big makes you crank the buckles, which does the same thing. First question: are you buckling super tight?"),
            ("slushy_sara", "I do crank the middle buckles because my heel moves...", 1),
            ("bootfitter_dan", "Yeah, that's it. Try loosening the two forefoot buckles completely and only snug the upper ones and the power strap. If your heel still lifts, a fitter can add heel pockets, or you need a different boot. Heated socks would work but they just hide the problem.", 2),
            ("gaper_greg", "https://www.example-skishop.com/heated-socks/battery-pro-3000"),
            ("frostbite_felix", "Also dry your boots every night. Damp liners = cold feet. Boot dryers are cheap."),
            ("icecoast_ian", "Boot gloves (the neoprene covers over the front of the boot) are $25 and help a lot on the coldest days. Toe warmers stuck on top of the sock work too."),
            ("slushy_sara", "Loosened the forefoot buckles today, toes were fine until 2pm for the first time ever. Gonna see a fitter about the heel."),
        ],
    ),
    Thread(
        "Skiing the Alps on a budget",
        "shredhead_nico",
        "Student here, want to do a week in the Alps in January. Everything online looks super expensive. "
        "Any tips for doing it cheap? Which countries or resorts are the best value?",
        [
            ("alpsgoat", "Lift tickets are way cheaper than in North America, so that's a good start. For value look at Austria (smaller resorts in Tirol, not the famous ones), the Italian side (Dolomites, Aosta valley) and Andorra. Switzerland is the expensive one. Someone made <a href=https://www.example-snowforecast.com/alps/budget-resorts>this list</a> a while ago, still mostly accurate."),
            ("alpsgoat", "Stay in a B&B or an apartment in the valley town, not at the base. Get a kitchen, shop at the supermarket, make sandwiches. Mountain restaurant lunches are where the money goes."),
            ("shredhead_nico", "What about getting there? Is there a bus from the airport?", 2),
            ("alpsgoat", "Most big resorts have shuttle transfers from Geneva, Zurich, Innsbruck, Munich, Turin etc. Trains get you into lots of valleys too, and they're cheap if you book early."),
            ("apres_andy", "Avoid the school holiday weeks, prices double. Mid to late January is usually the cheapest time."),
            ("skibum99", "Look for regional passes, some valleys share one pass across a bunch of small resorts."),
            ("japow_jun", "Not the Alps, but Japan can be cheaper than you'd think if you stay in hostels and eat at convenience stores lol. The flight is the killer."),
            ("sendit_sam", "following"),
            ("shredhead_nico", "Booked an apartment in a small Tirol village with 3 friends, 6 day pass + train for under \u20ac700 each. Hyped."),
        ],
    ),
    Thread(
        "Helmet with rotational protection: worth it?",
        "gapersday",
        "Need a new helmet. The ones with the rotational-impact liner are like $60 more. Is it actually worth it or just marketing?",
        [
            ("physio_lena", "The idea is to reduce rotational forces on the brain in angled impacts, which is how a lot of concussions happen. The research looks promising. $60 is cheap for your head."),
            ("skibum99", "Whatever you get, make sure it fits snug and doesn't move when you shake your head. A great helmet that's loose is worse than a basic one that fits."),
            ("treeski_tina", "Also replace it after any real impact, even if it looks fine. The foam crushes and doesn't come back."),
            ("gapersday", "how often should you replace them otherwise?", 3),
            ("physio_lena", "Most manufacturers say around 5 years, since the materials break down. Sooner if it takes a hit."),
        ],
    ),
    Thread(
        "Rent skis or buy boots first?",
        "tabletop_theo",
        "Skiing maybe 10 days this season. I can afford either boots or skis, not both. Which should I buy first?",
        [
            ("bootfitter_dan", "Boots, every time. Rental boots are the worst part of renting: packed out, wrong size, cold. Rental skis are fine, especially the demo ones. Good boots make every ski better."),
            ("coach_marek", "Agree 100%. Boots are your connection to the ski. And you can rent skis to match the conditions, which is a bonus."),
            ("skibum99", "+1 boots"),
            ("tabletop_theo", "Boots it is. Going to the fitter Saturday."),
        ],
    ),
    Thread(
        "Landing backseat on jumps",
        "sendit_sam",
        "Every time I hit the medium jumps I land with my weight on my tails and half the time I sit down. "
        "On the small jumps I'm fine. What's going on?",
        [
            ("parkrat_jules", "Two usual reasons: you're leaning back on takeoff (scared of the lip so you pull away from it), or you're coming up short and landing on the knuckle or the flat. Landing on the flat throws you back every time. Are you clearing the knuckle?"),
            ("sendit_sam", "honestly probably short. I speed check before", 1),
            ("parkrat_jules", "There it is. Watch where other people drop in and how many turns they make, and follow someone at their speed. Landing in the steep part of the landing feels soft. Flat = backseat + knee pain.", 2),
            ("coach_marek", "On takeoff, stay centered and stand tall through the lip. Hands forward where you can see them. If your hands go behind you, so do your hips."),
            ("rail_slayer", "Also don't suck your knees up super high in the air and then extend at the last second, keep some flex ready to absorb."),
            ("physio_lena", "Repeatedly landing on the flat is hard on the knees and lower back, so it's worth fixing for your body too."),
            ("gaper_greg", "send it harder"),
            ("sendit_sam", "stopped speed checking and kept my hands forward. landed like 10 in a row in the sweet spot. username finally accurate :D"),
        ],
    ),
    Thread(
        "Beacon recommendations for a beginner",
        "dawnpatrol_dee",
        "Buying my first avalanche beacon. Prices range from $250 to $500+. "
        "Does the expensive one actually matter for a recreational tourer? Is buying used ok?",
        [
            ("avy_anna", "Get a modern three-antenna digital beacon. The differences between mid-range and high-end are mostly features like marking in multiple burials, which are nice, but the most important feature is that you practice with it. A $300 beacon you know well beats a $500 one you don't. <a href=https://avy-course.example.org/gear/beacon-comparison>Comparison chart</a>"),
            ("couloir_cam", "Used is ok IF it's a recent model, you can check the software version and it passes its self test. Avoid old one- or two-antenna units. Batteries out in summer."),
            ("dawnpatrol_dee", "Why batteries out in summer?", 2),
            ("avy_anna", "Batteries can leak and corrode the contacts, which can kill the beacon. And use the battery type the manufacturer says (usually alkaline, not lithium or rechargeable)."),
            ("tele_ted", "Check your group's beacons against each other at the trailhead every time. Range check, send and receive."),
            ("couloir_cam", "Also buy a metal shovel and a 240cm+ probe. Plastic shovel blades bounce off avalanche debris."),
            ("dawnpatrol_dee", "Got a mid-range three-antenna one. Practicing in the park with my partner twice a week now."),
        ],
    ),
    Thread(
        "How long do ski boots last?",
        "groomer_gary",
        "My boots are 9 years old and the liners are flat as a pancake. Should I just get new liners or is the whole boot done?",
        [
            ("bootfitter_dan", "Liners typically pack out after 100-150 days. Shells last longer, but the plastic gets brittle with age and the toe and heel lugs wear down, which affects binding release. At 9 years I'd look at the whole boot. If the shell still fits great and isn't cracked, an aftermarket liner can buy you a couple more seasons."),
            ("tuningtom", "Check the soles. If the toe and heel are worn round, bindings can't hold or release properly. Some boots have replaceable soles, some don't."),
            ("groomer_gary", "Soles are pretty chewed up from walking across the parking lot lol", 2),
            ("bootfitter_dan", "Then new boots. Walking on asphalt kills the soles, get some boot sole covers for the parking lot walk next time."),
            ("gapersday", "RIP boots"),
        ],
    ),
    Thread(
        "Mount on the line or forward?",
        "shredhead_nico",
        "Getting new all-mountain twins mounted next week. The recommended line is at -8cm from center. "
        "I do a lot of spins and butters but also ski the whole mountain. Should I go forward? How much?",
        [
            ("parkrat_jules", "For spins and butters, forward helps: the swing weight feels more balanced and pressing is easier. 1-2cm forward of the line is a safe middle ground. All the way to center is for pure park skiers."),
            ("powderhound22", "Downside of going forward: less float in pow and less stability at speed, since there's less ski in front of you. If you ski pow a lot, don't go crazy."),
            ("steezy_steph", "I'm on +1 from the line on my daily and +4 on my park skis. Honestly you can't go wrong with +1/+2."),
            ("shredhead_nico", "Would you ever mount behind the line?", 3),
            ("steezy_steph", "Only on a dedicated pow/big mountain ski with a directional shape where you want max float and stability. Not on a twin."),
            ("tuningtom", "If you're unsure, some bindings have an adjustable track that lets you move them a couple cm. Or use inserts."),
            ("gaper_greg", "mount em backwards lmao"),
            ("jibjesus", ":lol:"),
            ("shredhead_nico", "Went +1.5. Butters feel way easier and I haven't noticed any lack of float yet."),
        ],
    ),
    Thread(
        "Skiing alone in the backcountry?",
        "dawnpatrol_dee",
        "None of my friends tour and I've been skinning up alone before work. So far I stick to low angle stuff. "
        "Everybody says never tour alone, but realistically a lot of people do. How do you guys think about it? Is there a way to do it responsibly?",
        [
            ("avy_anna", "The honest answer: solo, you have no companion rescue. If you get buried, nobody digs you out. That doesn't mean nobody ever tours alone, but it changes your terrain choice completely. Low angle terrain with nothing steep above you on a low danger day is a very different thing from skiing a couloir alone."),
            ("couloir_cam", "I do it sometimes. My rules: under 30 degrees, no slopes above me, no terrain traps, someone knows exactly where I am and when I'll be back. And I turn around a lot."),
            ("dawnpatrol_dee", "That's pretty much what I've been doing. Low angle trees, close to the road.", 1),
            ("tele_ted", "Think about the non-avalanche risks too. Tree wells, a twisted knee at -15 with no one around, breaking through a creek. Carry a small first aid kit, headlamp, an extra layer, and keep your phone charged in an inside pocket."),
            ("avy_anna", "Great point. People focus on avalanches, but injuries are way more common. A satellite messenger is worth it if there's no cell coverage.", 4),
            ("sendit_sam", "just ski alone, yolo"),
            ("couloir_cam", "Nah. Plenty of people who said that aren't around to say it anymore.", 6),
            ("freshtracks_fi", "Could you find partners through a local touring group or your avy course? That's how I met my touring crew."),
            ("dawnpatrol_dee", "Good idea, I'll look. Most people in my course lived far away though."),
            ("avy_anna", "Local backcountry groups and resort uphill clubs are a great way in. But a partner you barely know is not automatically safer. Talk about terrain and risk tolerance before you go."),
            ("wasatch_wes", "We have a morning uphill crew at the resort here, 6am every Tuesday and Thursday. Resort dawn patrol (where uphill is allowed) is a perfect solo option: patrol is around and it's controlled terrain. Check the uphill policy first."),
            ("dawnpatrol_dee", "Oh that's smart, resort uphill is a good middle ground."),
            ("gapersday", "+1"),
            ("tele_ted", "One more: leave a trip plan with someone. Where, which route, and when to call for help if you don't check in. Every single time."),
            ("couloir_cam", "And carry your beacon even solo. Nobody's there to dig you out, but if other people are around (or searchers later), it helps them find you.", 14),
            ("avy_anna", "Yes. And turn it on at the car, not at the top.", 15),
            ("dawnpatrol_dee", "Thanks everyone, good discussion. Keeping the solo laps to low angle stuff near the road + leaving a plan, joined the Tuesday resort uphill crew, and messaged a couple of people from my course about weekend tours."),
            ("avy_anna", "That's a really solid approach. Have fun out there!"),
        ],
    ),
    Thread(
        "Night skiing near Boston?",
        "yardsale_yuki",
        "Just moved to Boston for work. Where can I ski after work on weeknights? Ideally less than 1.5 hours away with lights.",
        [
            ("yardsale_yuki", "bump"),
            ("icecoast_ian", "There are a few small hills within an hour that run night skiing most weeknights. Small vertical, but great for getting laps in and working on technique. A couple of them have decent little parks too."),
            ("vermont_vic", "Night skiing is basically ice skating after 7pm once it refreezes, so keep those edges sharp lol"),
            ("apres_andy", "Night passes are super cheap too, like half the price of a day ticket. Good deal for weekday laps."),
            ("yardsale_yuki", "Got a night pass at the closest one, 45 min from the office. Thanks"),
        ],
    ),
    Thread(
        "Core shot repair: DIY or shop?",
        "noodle_legs",
        "Hit a rock and now I have a gouge about 3cm long on the base where you can see the core. "
        "Can I fix it with a p-tex candle or does it need to go to a shop?",
        [
            ("tuningtom", "If you can see the core (wood or foam), it's a shop job to do properly. They'll clean it out and use a base weld or a patch that actually bonds. Candle drips don't bond well to the base and tend to pop out, especially in deeper gouges."),
            ("tuningtom", "For shallow scratches that don't go through the base, a candle (or better, a repair gun) is fine at home:\n<b>1.</b> clean the area with base cleaner\n<b>2.</b> light the candle and hold it close so it drips without black smoke\n<b>3.</b> overfill, let it cool\n<b>4.</b> scrape flush with a sharp metal scraper"),
            ("noodle_legs", "How much does a shop charge for that?", 1),
            ("skibum99", "Around here $20-40 for a core shot on top of the tune. Worth it, otherwise water gets into the core.", 3),
            ("gaper_greg", "duct tape"),
            ("noodle_legs", "Dropped them off, $30 with a base grind. Thanks"),
        ],
    ),
    Thread(
        "Wrist injury after a rail fall",
        "steezy_steph",
        "Slipped off a down rail yesterday and caught myself with my hand. Wrist is swollen and it hurts on the thumb side when I grip. "
        "Can I just ice it and ski next weekend?",
        [
            ("physio_lena", "Pain on the thumb side of the wrist after falling on an outstretched hand needs an x-ray. A scaphoid fracture is common in exactly that fall and often doesn't swell much. If it's missed it can heal badly. Get it checked this week, not next month."),
            ("steezy_steph", "ugh. it doesn't look that bad.", 1),
            ("physio_lena", "That's the sneaky part of scaphoid injuries. Press the little hollow at the base of your thumb (the \"snuffbox\"). If that's tender, definitely get it imaged.", 2),
            ("rail_slayer", "Wrist guards on rails after that. Cheap, light, fit under gloves."),
            ("steezy_steph", "Update: small scaphoid fracture, in a cast for 6 weeks. Glad I went in. Season's not over yet though, see you in March."),
        ],
    ),
    Thread(
        "Where to mount an action cam?",
        "sendit_sam",
        "Got an action cam for xmas. Helmet mount, chest mount or pole? I want footage that actually looks good.",
        [
            ("filmer_ford", "Chest mount is the most underrated one: you see your hands and skis and it feels more like you're there. Helmet-top looks cool but shows a lot of sky. Side of the helmet looks lopsided."),
            ("filmer_ford", "A pole/selfie stick is the best for follow cam and for filming yourself doing tricks. Hold it low and steady, don't wave it around."),
            ("butter_queen", "Mouth mount if you're brave lol, best POV angle but don't crash"),
            ("sendit_sam", "that sounds terrifying", 3),
            ("filmer_ford", "It is. Start with the chest mount :D", 4),
        ],
    ),
    Thread(
        "Climbing skins sticking to themselves",
        "freshtracks_fi",
        "The glue on my climbing skins keeps sticking to itself when I fold them and it's a wrestling match to get them apart on a cold day. "
        "Is that normal? How do you store them?",
        [
            ("avy_anna", "Use the cheat sheets (the mesh or plastic sheets that came with them) when you store them overnight. On the tour, fold them glue to glue and peel apart slowly from one end. Keep them inside your jacket on cold days so the glue stays soft."),
            ("tele_ted", "If the glue is really thick and old, it's time to re-glue or buy new skins. Old glue gets gooey and leaves residue on your bases."),
            ("freshtracks_fi", "They're brand new lol", 2),
            ("couloir_cam", "Then it's just new skins being extra sticky, they calm down after a few days. Fold them glue to glue for transitions and use the cheat sheets only for storage."),
            ("couloir_cam", "Also rub some skin wax on the fur side on warm spring days so snow doesn't ball up."),
            ("freshtracks_fi", "Keeping them in my jacket on the way up made a big difference. Thanks"),
        ],
    ),
    Thread(
        "Tree skiing: how do I stop staring at the trees?",
        "yardsale_yuki",
        "Tried the glades for the first time and spent the whole time staring at trees, then nearly hitting them. "
        "How do you guys look at the gaps and not the trees?",
        [
            ("treeski_tina", "Look at the gaps, not the trees. Sounds dumb but your skis follow your eyes. Pick your line 3-4 turns ahead and keep looking at the white spaces."),
            ("coach_marek", "Speed control is everything in the trees. Short turns, and don't let speed build. If you need to stop, stop. Out of control in the trees is the worst place to be."),
            ("yardsale_yuki", "Easier said than done lol", 1),
            ("treeski_tina", "Totally. Start on wide-spaced mellow glades. The tight steep ones can wait.", 3),
            ("avy_anna", "Watch out for tree wells on deep days. Ski with a partner, stay in sight of each other, and if you go in head first, protect your airway."),
            ("icecoast_ian", "[i]Take your hands out of the pole straps in the trees.[/i] If a basket catches on a branch you don't want your shoulder to go with it."),
            ("yardsale_yuki", "Went back with a buddy and focused on the gaps. Way smoother. Still got whipped by a branch though :lol:"),
        ],
    ),
    Thread(
        "What ski length for park?",
        "bluebird_bella",
        "5'5, 125 lbs. My current skis are 165 and I'm getting into park. Should I size down for spins?",
        [
            ("steezy_steph", "Park skis are usually sized shorter than all-mountain, around chin to nose height. For you probably 155-160. Shorter = easier to spin and butter, less swing weight."),
            ("parkrat_jules", "If you mostly hit jumps, especially bigger ones, don't go too short, longer skis are more stable in the air and on landings. Mostly rails and jibs, go shorter."),
            ("bluebird_bella", "Mostly small to medium jumps and boxes.", 2),
            ("steezy_steph", "158ish then. A soft flex helps too at your weight."),
            ("butter_queen", "I'm 5'4 and ride 157 for park, 165 for everything else. Works great."),
            ("bluebird_bella", "Ordered 158s. Thanks!"),
        ],
    ),
    Thread(
        "Women's vs men's skis: is there a real difference?",
        "treeski_tina",
        "Shopping for new skis. The women's version of the ski I want has a different graphic and costs the same, but the shop says it's \"lighter and softer\". "
        "Is that real or just marketing? I'm 5'8 and ski aggressively.",
        [
            ("steezy_steph", "Depends on the brand. Some just change the graphic and the lengths. Some change the core (lighter wood, less metal), which makes them softer. Look up the specs: if the weight and construction are the same, buy whichever graphic you like."),
            ("alpsgoat", "Some women's versions are also mounted a bit further forward, based on the idea that the center of mass is different. Whether that matters is very individual."),
            ("treeski_tina", "Specs say same construction, just different lengths available.", 1),
            ("steezy_steph", "Then it's really just the graphic and the size range. Pick the length that fits you."),
            ("gaper_greg", "pink tax"),
            ("whistler_kat", "Ski what fits your weight and style, not the label. I ski \"men's\" skis because I'm heavy on my edges and ski fast, and lots of guys ski \"women's\" skis because they're lighter."),
            ("treeski_tina", "Went with the one with the better graphic lol. 177, because the women's line only went to 170.\n[img]https://imgs.example-pics.net/u/treeski_tina/new_skis.jpg[/img]"),
        ],
    ),
    Thread(
        "Flying a drone to film at a resort?",
        "tabletop_theo",
        "Want to film my friends in the park with a small drone. Is that allowed at ski resorts? Anyone done it?",
        [
            ("filmer_ford", "Almost every resort bans drones unless you get <i>written</i> permission, usually through their marketing or media department. Flying over lifts and crowds is a big safety issue. Ask first, a lot of them say no."),
            ("avy_anna", "Also: rescue helicopters and patrol operations. A drone in the wrong place can ground a rescue flight. Please don't just fly it."),
            ("tabletop_theo", "Makes sense. What about in the backcountry?", 1),
            ("filmer_ford", "Depends on the land. Lots of national parks and protected areas ban them completely, and you still need to follow your country's drone rules. Check before you go."),
            ("tabletop_theo", "I'll stick to the pole cam for now :rolleyes:"),
        ],
    ),
    Thread(
        "Knee pain after ski days",
        "liftline_lou",
        "The front of my knees aches after every ski day, sort of around the kneecap. No fall, no injury, just sore. "
        "Skiing about 20 days a season. Ideas?",
        [
            ("physio_lena", "Pain around the kneecap after skiing is often the joint behind the kneecap getting overloaded. Common causes: skiing in the backseat so your quads work overtime, weak hips and glutes, and boot stance issues. If it persists or swells, get it looked at properly."),
            ("coach_marek", "Backseat is the usual suspect. If your quads burn on every run, you're probably sitting back. Shins in the tongues, hips over your feet."),
            ("bootfitter_dan", "Also check your boots. Too upright, too much forward lean, or cuff alignment that's off can all load the knee weirdly. A good fitter can check your stance and alignment."),
            ("liftline_lou", "Quads definitely burn a lot. So technique probably.", 2),
            ("physio_lena", "Probably a mix. Work on technique with a lesson, and do some hip and glute strength (side-lying leg raises, single-leg squats, step-downs). Most people feel better in a few weeks.", 4),
            ("liftline_lou", "Took a lesson, instructor said I'm a chronic backseater. Knees already feel better after two days of working on it."),
        ],
    ),
    Thread(
        "Multi-resort pass or local season pass?",
        "vermont_vic",
        "Trying to decide between the big multi-resort pass and the season pass at my local hill. Local is $450, the big one is $900. "
        "I ski about 25 days, mostly local, plus maybe one trip out west. Which makes sense?",
        [
            ("icecoast_ian", "Do the math on the trip: a week of lift tickets out west at window price can easily be $1000+. If the big pass covers both your local hill and the trip resort, it pays for itself."),
            ("skibum99", "If your local hill isn't on the big pass, you're basically paying for two passes. Then it's local pass + discounted tickets bought in advance for the trip."),
            ("vermont_vic", "Local hill isn't on it, that's the problem.", 2),
            ("icecoast_ian", "Then local pass, and book the trip tickets early online, they're way cheaper than at the window. Some resorts sell 3-5 day packs."),
            ("wasatch_wes", "Also check the blackout dates. Some cheaper pass versions are blacked out around holidays, which is exactly when a lot of people travel."),
            ("sendit_sam", "local pass gang"),
            ("gaper_greg", "just sneak on the lift lol{{mod:Don't encourage ticket fraud. Warning issued - mod_marmot}}"),
            ("vermont_vic", "Local pass + a 4 day pack bought in September for the trip. Saved like $400 vs the big pass."),
        ],
    ),
    Thread(
        "Cliff drops: how do I start?",
        "groomer_gary",
        "Getting more comfortable off-piste and want to start hitting small drops. Right now anything over about a meter freaks me out. "
        "How do you progress safely? Any technique tips for the landing?",
        [
            ("couloir_cam", "Start with rollers and small drops with a steep, soft landing. The landing matters more than the drop: a 2m drop into steep pow is way easier on your body than a 1m drop onto flat hardpack."),
            ("powderhound22", "Always look at the landing first. Ski to the bottom, look up at it, check for rocks. Then come down from above knowing exactly where you're taking off."),
            ("groomer_gary", "How do you find the takeoff from above? Everything looks the same from the top lol", 2),
            ("powderhound22", "Pick a marker: a tree, a rock, a tracked-out spot next to the lip. Or have a buddy stand next to the takeoff. The classic mistake is dropping in from the wrong spot.", 3),
            ("coach_marek", "Technique: come in with a bit of speed (too slow and you land on the knuckle), pop gently off the lip, hands forward, eyes on the landing. Skis level in the air, absorb with your legs when you land."),
            ("sendit_sam", "send it"),
            ("couloir_cam", "...after scouting it. :rolleyes:", 6),
            ("wasatch_wes", "Bigger drops need more speed than you'd think. Landing on the flat part below a drop is the #1 way people get hurt. Steep landing = soft landing."),
            ("groomer_gary", "Hit a 1.5m rock drop with a pow landing 5 times yesterday. Scouted it first like you said. Super fun."),
        ],
    ),
    Thread(
        "Ski trip packing list: what do people forget?",
        "apres_andy",
        "Flying out for my first ski trip next week. What's the stuff people always forget?",
        [
            ("skibum99", "Boots in your carry-on. Everything else can be rented if the airline loses your bag, your boots can't. Also sunscreen and lip balm, the sun at altitude will fry you."),
            ("frostbite_felix", "Spare goggle lens, neck gaiter, hand warmers, a small multitool, a boot bag."),
            ("bluebird_bella", "Phone charger + a battery pack. Cold kills phone batteries and you'll be trying to find your friends at 3pm."),
            ("apres_andy", "Didn't even think about boots in the carry-on. Smart.", 1),
            ("gapersday", "Swimsuit for the hot tub!!"),
        ],
    ),
    Thread(
        "Old skis: recycle or keep as rock skis?",
        "mogul_mike",
        "Have three old pairs in the garage. Rock skis? Recycle? Anyone made anything cool out of them?",
        [
            ("corn_snow_carl", "Keep the least beat-up pair as early season rock skis. You'll be glad in November when there's 20cm over rocks."),
            ("dad_on_skis", "Made a bench out of two pairs for the deck. Kids love it."),
            ("apres_andy", "Shot ski. Obviously. :D"),
            ("mogul_mike", "lol the shot ski was always going to be the answer", 3),
        ],
    ),
    Thread(
        "Can you actually carve on park twin tips?",
        "backseat_barry",
        "I ride soft park twins everywhere and my friends on carving skis lay down these trenches on the groomers. Mine just skid. Is it the skis or me?",
        [
            ("coach_marek", "Both, but mostly you. A soft twin won't hold like a stiff carver at high speed, but you can absolutely carve it at moderate speed. Roll the skis onto edge with your ankles and knees, keep the upper body quiet and let the sidecut turn the ski. If you're pushing the tails out, that's the skid."),
            ("tuningtom", "Check your edges too. Lots of park skis get detuned the whole length, and then they can't hold on hardpack. Sharpen underfoot at least."),
            ("backseat_barry", "they're pretty much detuned tip to tail lol", 2),
            ("tuningtom", "There you go. Get them sharpened from the contact points inward and only detune the very tips and tails.", 3),
            ("jibjesus", "park skis are for slashing not carving"),
            ("backseat_barry", "Sharpened the edges and worked on rolling my ankles. Not trenches yet, but actual clean arcs. Thanks"),
        ],
        mod_note="Moved from Gear by admin",
    ),
    Thread(
        "Backcountry snacks?",
        "couloir_cam",
        "What do you bring to eat on long tour days? Everything I pack is either frozen solid or crushed by lunch.",
        [
            ("avy_anna", "Stuff that doesn't freeze: nuts, cheese, salami, chocolate, tortillas with peanut butter. Energy bars turn into bricks, keep them in an inside pocket."),
            ("tele_ted", "Insulated bottle with hot sweet tea. Game changer on cold days, and water bottles freeze anyway."),
            ("dawnpatrol_dee", "Eat a little at every transition instead of one big lunch. Keeps your energy steady."),
            ("freshtracks_fi", "Cold pizza. Still good frozen honestly."),
            ("couloir_cam", "Cold pizza is the correct answer, thread closed :lol:", 4),
        ],
    ),
    Thread(
        "Boot flex for park?",
        "yardsale_yuki",
        "Need new boots. I ski about 60% park. Everyone online says soft boots for park, but my fitter recommended a 120 flex. Who's right?",
        [
            ("bootfitter_dan", "Flex numbers aren't standardized between brands, so a 120 from one can be softer than a 110 from another. And fit matters way more than flex. If the fitter put you in the boot that fits your foot best, trust that and tweak the flex (some boots have flex adjusters, or you can pull a screw or rivet)."),
            ("parkrat_jules", "Lots of park skiers like softer boots for butters and absorbing landings. But if you hit big jumps, a stiffer boot supports you on landings. 60% park with medium jumps, 100-110 feels right to me."),
            ("yardsale_yuki", "The fitter said the 120 fits my narrow heel best. It has a flex adjuster.", 1),
            ("bootfitter_dan", "Then that's your boot. Put it on the softer setting and see how it feels. Fit first, always."),
            ("steezy_steph", "Also boots soften a lot when it's warm and get way stiffer on cold days. A 120 at -15 is a plank."),
            ("rail_slayer", "Progressive flex is the thing to look for in park boots: smooth through the range instead of hitting a wall."),
            ("yardsale_yuki", "Took the 120 on the soft setting. Feels great for park and I can still ski the whole mountain."),
        ],
    ),
    Thread(
        "Surviving icy east coast days",
        "slushy_sara",
        "Went to the hill after a rain-freeze and it was basically a skating rink. I was skidding everywhere and scared the whole day. "
        "How do east coasters deal with this?",
        [
            ("icecoast_ian", "Sharp edges first, we've covered that in a bunch of threads. Then: stay balanced over the middle of your feet, don't lean in with your whole body, tip the skis with your ankles and knees and angulate (hips inside, upper body over the outside ski). Shorter turns help you control speed without skidding."),
            ("vermont_vic", "Look for the soft stuff. The edges of the trail where skiers push snow, shady spots that didn't refreeze as hard. The middle of a popular groomer is the iciest."),
            ("slushy_sara", "What does angulate actually mean? I hear it all the time.", 1),
            ("coach_marek", "Bending at the hips and knees so your legs can tilt the skis on edge while your upper body stays more upright and over the outside ski. If you lean your whole body in like on a bike, the skis lose grip on ice and slide out.", 3),
            ("icecoast_ian", "And commit to the outside ski. Most people on ice end up on their inside ski out of fear, and that's when they wash out."),
            ("gaper_greg", "skip ice days, drink beer"),
            ("vermont_vic", "Sometimes that's the right call honestly :D Or wait until 11 when the sun softens things.", 6),
            ("slushy_sara", "Went back on a firm day and focused on the outside ski and the edges of the trail. Much better. Still hate ice though."),
        ],
    ),
    Thread(
        "Spring corn: when to ski which slopes?",
        "bluebird_bella",
        "Heard about \"corn harvesting\" in spring. When is the best time of day and which slopes should I ski? "
        "Sometimes I hit it right and it's amazing, sometimes it's ice or slush.",
        [
            ("corn_snow_carl", "Corn needs a freeze overnight and sun during the day. The sun softens the surface from the top, and you want to ski it when the top inch or two has softened but it isn't slush yet. Follow the sun: east-facing slopes first (mid morning), then south, then west in the afternoon."),
            ("corn_snow_carl", "Too early = breakable crust or ice. Too late = sticky mashed potatoes, and in the backcountry, wet slide danger. The window can be as short as an hour."),
            ("bluebird_bella", "So what if it didn't freeze overnight?", 2),
            ("corn_snow_carl", "No refreeze = no corn, just slush, and in avalanche terrain a warm night is a red flag for wet slides. Ski low angle, go early, get off steep sunny slopes early."),
            ("avy_anna", "+1. In the backcountry, roller balls and pinwheels running down the slope are the snowpack telling you it's time to go home."),
        ],
    ),
    Thread(
        "Nose press vs tail press: which is easier?",
        "backseat_barry",
        "Working on presses on boxes. Tail presses feel way easier than nose presses for me, but everyone says learn nose presses first. Does it matter?",
        [
            ("butter_queen", "Tail presses are usually easier because most people naturally sit back (no offense). Nose presses need more commitment forward, so people push them first to break the backseat habit. Learn both, there's no rule."),
            ("parkrat_jules", "For nose presses on a box: ride up flat, get your weight over the front of your bindings and pull the tails up with your heels. Arms out front for balance."),
            ("backseat_barry", "none taken lol, it's literally my username", 1),
            ("rail_slayer", "Do them on the snow first, then on a wide box. A wobbly nose press on a box = face plant."),
            ("butter_queen", ":lol: perfect", 3),
        ],
    ),
    Thread(
        "Getting over fear after a bad crash",
        "noodle_legs",
        "Took a hard slam on a jump last month (concussion, ok now). I'm cleared to ski, but every time I get near the park my legs shake. "
        "I used to love jumping. How do you get your head back?",
        [
            ("physio_lena", "Totally normal after a concussion, and fear is actually useful information. Start way below your previous level: small jumps you could do in your sleep, until they feel boring again. Then go one step up."),
            ("parkrat_jules", "Everyone who's been in the park long enough has been there. What helped me: only the small line for a couple of weeks, riding with friends who don't pressure me, and calling it a day as soon as the fear takes over."),
            ("noodle_legs", "The friends-who-don't-pressure part is real. My crew keeps saying just do it.", 2),
            ("parkrat_jules", "Tell them. Any decent crew gets it. If they don't, ride with someone else for a bit.", 3),
            ("coach_marek", "Visualization sounds silly but helps: picture the whole run clean, from drop-in to ride-away, before you go. Trampoline or airbag sessions are also great for getting air awareness back without the consequences."),
            ("sendit_sam", "you got this"),
            ("steezy_steph", "Took me almost a full season after my wrist thing to feel normal on rails again. It comes back. Be patient."),
            ("physio_lena", "And if headaches, dizziness or that foggy feeling come back, stop and get checked again. A second concussion close to the first is a big deal."),
            ("noodle_legs", "Spent the weekend on the small line only. Felt boring by Sunday, which I guess is the point. Step by step."),
        ],
    ),
    Thread(
        "Gloves vs mittens",
        "gapersday",
        "My hands are always cold. Are mittens really that much warmer than gloves? I feel like I lose so much dexterity.",
        [
            ("frostbite_felix", "Yes, noticeably warmer, your fingers share heat. Get mittens with a thin liner glove inside. Take the mitt off for zippers and buckles, the liner keeps your fingers from freezing."),
            ("icecoast_ian", "Leather gloves treated with wax are warm, cheap and last forever. Re-treat them every season."),
            ("gapersday", "liner + mitt makes sense, didn't know people did that", 1),
            ("tele_ted", "Lobster mitts (the 3-finger ones) are a decent middle ground too. Got mine here: https://www.example-skishop.com/gloves/lobster-mitt?ref=sidehit&utm=forum"),
            ("gaper_greg", "this"),
        ],
        mod_note="Merged with a duplicate thread by mod_marmot",
    ),
    Thread(
        "Japan in March: still worth it?",
        "powderhound22",
        "Can only get time off in mid-March. Is Japan still good then or is the season basically over?",
        [
            ("powderhound22", "bump"),
            ("japow_jun", "Early to mid March in Hokkaido can still be really good, it's just less consistent. Some storms are still proper powder, and on sunny days you get spring conditions lower down. The resorts on the main island warm up faster."),
            ("japow_jun", "Bonus: it's cheaper and way less crowded than January/February. Pick somewhere with high elevation or north-facing terrain and you'll probably be fine."),
            ("treeski_tina", "Went to Hokkaido in March 2 years ago, got 3 powder days out of 8. Onsen every day. Would do it again."),
            ("powderhound22", "3/8 is better than my home hill lol. Booking it.", 4),
        ],
    ),
    Thread(
        "180s off side hits: can't ride away switch",
        "tabletop_theo",
        "Trying to learn 180s on side hits around the mountain. I get around but I'm wobbly riding away switch and usually spin out. Tips?",
        [
            ("parkrat_jules", "Ride switch on the groomers a lot. If you can't ski switch comfortably on flat snow, riding away from a 180 will always be sketchy. Look over your shoulder down the hill, weight centered."),
            ("butter_queen", "On the landing, look over your lead shoulder right away. Your body follows your head. Lots of people land looking uphill and then spin out."),
            ("tabletop_theo", "I think I'm looking at my tips on the landing.", 2),
            ("butter_queen", "That's the spin out. Head turned downhill over the shoulder, and a little flex in your knees.", 3),
            ("jibjesus", "also pop off both feet. if you take off from one ski you land crooked"),
            ("tabletop_theo", "Spent a day just skiing switch on blues. 180s are way cleaner now."),
        ],
    ),
    Thread(
        "How do you store skis over the summer?",
        "dawnpatrol_dee",
        "End of season. Anything I should do before the skis go in the basement for 6 months?",
        [
            ("tuningtom", "Storage wax: put on a thick coat of wax and don't scrape it. It keeps the base from drying out and the edges from rusting. Scrape and brush it in the fall before your first day. Step by step: <a href=https://www.example-skishop.com/guides/storage-wax>storage wax how-to</a>"),
            ("tuningtom", "Make sure everything is dry first, especially the edges. Store them somewhere dry and not too hot: no hot attic, no damp garage. And don't strap them super tight against each other for months."),
            ("dawnpatrol_dee", "Should I turn down the DIN?", 1),
            ("tuningtom", "Most binding makers say it's not needed with modern bindings. If you want to, fine, just remember to set it back correctly in the fall. Many people forget."),
            ("avy_anna", "And take the batteries out of your beacon!"),
        ],
    ),
    Thread(
        "Chamonix first time: do I need a guide?",
        "frostbite_felix",
        "Going to Chamonix for a week in February, strong skier. Can I ski the famous off-piste stuff on my own or do I need a guide? "
        "The Vallée Blanche looks incredible.",
        [
            ("alpsgoat", "Hire a guide for the Vallée Blanche and anything glaciated. It's not a groomed run, there are crevasses, and the descent starts with an exposed ridge walk from the top station. Conditions change every year. A guide is worth every euro."),
            ("alpsgoat", "There's plenty of great skiing without a guide on the marked runs. Just know that off-piste in the Alps is not patrolled or avalanche controlled like a North American resort. Beacon, shovel, probe and the knowledge to use them if you leave the marked runs."),
            ("frostbite_felix", "Didn't know off-piste wasn't controlled. Good to know.", 2),
            ("avy_anna", "That's the #1 misunderstanding North Americans have in the Alps. Read the local avalanche bulletin every day: <a href=https://avy-course.example.org/bulletins/alps>https://avy-course.example.org/bulletins/alps</a>", 3),
            ("couloir_cam", "Did the VB with a guide last year. [img]https://imgs.example-pics.net/u/couloir_cam/vb_crevasse.jpg[/img] Glad we did, there was a fresh crevasse in one section that we'd have skied right into."),
            ("alpsgoat", "If the weather's bad, there's good tree skiing lower down, and the Italian side is just through the tunnel, often with different weather."),
            ("apres_andy", "And eat all the cheese. All of it."),
            ("frostbite_felix", "Booked a guide for 2 days including the Vall\u00e9e Blanche. Thanks!"),
        ],
    ),
    Thread(
        "Kids ski gear: how do you deal with them growing?",
        "dad_on_skis",
        "Update from my daughter thread: she's hooked, and now her little brother wants to ski too. "
        "Buying new gear for two growing kids every year sounds expensive. How do other parents handle it?",
        [
            ("slushy_sara", "Seasonal lease programs at local shops are great. You rent skis and boots for the whole season for like $100-200 and swap them at the end."),
            ("coach_marek", "Ski swaps in the fall. Hand-me-downs work for skis, but boots must fit the kid wearing them, not the kid who grew out of them."),
            ("dad_on_skis", "So no buying boots 2 sizes up lol", 2),
            ("coach_marek", "Exactly. Too-big boots are the #1 thing that holds kids back."),
            ("bluebird_bella", "Buy helmets and goggles new, everything else used. Check the swap listings at your local ski club."),
        ],
    ),
    Thread(
        "Rate my quiver",
        "skibum99",
        "Finally have a real quiver after years of one ski. 86 underfoot park ski, 98 daily driver with a bit of metal, 112 pow twin, plus an old 100 touring setup. "
        "What's missing? Be honest.\n[img]https://imgs.example-pics.net/u/skibum99/quiver.jpg[/img]",
        [
            ("steezy_steph", "Solid. Basically my quiver lol. Only thing I'd add is a dedicated rock ski for early season."),
            ("powderhound22", "Where's the 120+ for the deepest days?"),
            ("skibum99", "Honestly the 112 handles everything I see here. Maybe if I move to Utah", 2),
            ("wasatch_wes", "Move to Utah. Problem solved.", 3),
            ("gaper_greg", "too many skis. one ski is all you need"),
            ("sendit_sam", "says the guy who skis in jeans and a beer jacket", 5),
            ("tuningtom", "A quiver is also 4x the tuning though. Hope you like waxing :D"),
            ("tele_ted", "missing a tele setup :cool:"),
            ("skibum99", "never :lol:", 8),
            ("jibjesus", "sick quiver"),
        ],
    ),
    Thread(
        "Heat molding boot liners: can I do it at home?",
        "vermont_vic",
        "Bought new boots online (yes I know) and they have heat-moldable liners. Should I heat them? Can I do it at home in the oven?",
        [
            ("bootfitter_dan", "Definitely do NOT use your oven. Most liners are meant to be heated in a fitter's liner heater at a controlled temperature. Too hot and you ruin the liner, uneven heat gives you hot spots."),
            ("bootfitter_dan", "A fitter will heat them, put toe caps on your feet so there's room at the front, and have you stand in a ski stance for 10-15 minutes. Usually cheap or free if you bought the boots there. Since you didn't, expect to pay a bit."),
            ("vermont_vic", "Oven was literally my plan lol", 1),
            ("bootfitter_dan", "Everyone's plan. :rolleyes: I've seen liners come in half melted.", 3),
            ("icecoast_ian", "Skiing them for a few days before molding isn't a bad idea either. A lot of liners pack in on their own, then you mold the remaining pressure points."),
            ("vermont_vic", "Took them to a fitter, $40 for the mold + a small punch for my pinky toe. Worth it."),
        ],
    ),
    Thread(
        "First slopestyle comp: what should I expect?",
        "jibjesus",
        "Signed up for a local slopestyle comp next month as part of the sponsorship plan lol. Never done one. "
        "How does the day work and how do judges score? Should I go for my hardest tricks?",
        [
            ("parkrat_jules", "Usually: practice in the morning, then 2 runs, best run counts. Judges score difficulty, execution (clean landings, style), amplitude and variety (different spin directions, rails and jumps). A clean run with solid tricks beats a run where you fall on your hardest trick. The <a href=https://www.example-freeskicomps.org/rules/judging>judging criteria</a> are public for most local series."),
            ("steezy_steph", "Plan your run in practice and stick to it. Do the whole run 2-3 times in practice. First-comp nerves are real and a plan helps."),
            ("jibjesus", "Should my first run be the safe one?", 2),
            ("parkrat_jules", "Most people land a safe run first, then go bigger on run 2 if the first one scored decent. Having a score on the board takes the pressure off."),
            ("rail_slayer", "Variety matters. Don't do 3 left spins. Switch up the direction, throw one switch trick, show some rail variety."),
            ("filmer_ford", "I'll bring the camera. Comps are great footage too."),
            ("sendit_sam", "good luck!!"),
            ("steezy_steph", "Eat breakfast and bring snacks. Comp days are long and waiting at the top is cold."),
            ("jibjesus", "Got 3rd in open men's! Landed a safe run 1, stomped a switch 5 on run 2. Thanks for the advice :D"),
        ],
    ),
    Thread(
        "Apr\u00e8s & food in St. Anton: worth the hype?",
        "apres_andy",
        "Going to St. Anton in March with friends. I keep hearing about the apr\u00e8s scene. Is it really that wild? "
        "And any tips for food that doesn't cost a fortune?",
        [
            ("alpsgoat", "It's loud. The huts above the village get going around 3 and people ski down afterwards, which is... not the best idea. Go, have fun, and maybe walk down or take it very easy on the last run."),
            ("alpsgoat", "Food: bakeries and supermarkets in the village for breakfast and lunch. Dinner in the smaller places up the side streets, not on the main drag."),
            ("apres_andy", "lol noted on the last run", 1),
            ("skibum99", "The skiing is also amazing btw, don't just go for the party. Lots of off-piste off the top, but same rules as the rest of the Alps: not controlled, go with a guide."),
        ],
    ),
    Thread(
        "Ski straps: what do you use them for?",
        "freshtracks_fi",
        "Everyone in the backcountry seems to have a few ski straps on their pack. What do you use them for?",
        [
            ("couloir_cam", "Everything. Skis together for carrying, fixing a broken binding or boot buckle, splinting in a first aid emergency, holding a skin on when the glue fails, strapping gear to your pack."),
            ("tele_ted", "Wrap one around your pole shaft so you always have it."),
            ("avy_anna", "An improvised rescue sled made from skis is held together with straps too. Bring 2-3."),
            ("sendit_sam", "<a href=https://www.example-skishop.com/accessories/ski-straps?size=20in&color=orange>https://www.example-skishop.com/accessories/ski-straps</a>"),
            ("freshtracks_fi", "Bought 4. Thanks"),
        ],
    ),
    Thread(
        "Am I too old to learn park at 35?",
        "dad_on_skis",
        "Be honest. I'm 35, decent all-mountain skier, never done park. My kids are hitting little jumps now and I'm jealous. "
        "Is it too late to learn, or am I going to break myself? What should a grown-up's park progression look like?",
        [
            ("parkrat_jules", "Not too late at all! Plenty of people start park in their 30s and 40s. You'll progress differently than a 14 year old (you actually think about consequences, which is good). Small jumps, boxes, butters."),
            ("physio_lena", "Bodies in their 30s handle it fine if you build up. Pre-season strength & balance work, warm up before you hit the park (a couple of groomer runs first), and stop before you're tired."),
            ("dad_on_skis", "Consequences are definitely on my mind. I have to go to work on Monday lol", 1),
            ("parkrat_jules", "Exactly why you go slow. The progression: ride through the small line without hitting anything to learn it. Then ollie over the small rollers. Then straight airs on small jumps, riding away clean. Then 180s on side hits, then boxes.", 3),
            ("sendit_sam", "35 is young. There's a guy at my hill in his 60s doing 3s"),
            ("butter_queen", "Butters on the groomers are low-consequence and super fun. Great place to start."),
            ("steezy_steph", "Take a park lesson. Lots of resorts run adult park clinics. You'll learn the park etiquette too (call your drop, don't sit on the landing)."),
            ("dad_on_skis", "Didn't know adult park clinics were a thing. Checking now.", 7),
            ("coach_marek", "I teach for a living, and the adults in my park clinics usually progress faster than they expect. Technique from all-mountain skiing transfers, it's mostly about getting comfortable in the air."),
            ("gaper_greg", "ok boomer{{mod:Keep it friendly please - mod_marmot}}"),
            ("dad_on_skis", "35 isn't a boomer lol", 10),
            ("jibjesus", "wear a helmet and impact shorts. falling on a box at any age sucks"),
            ("rail_slayer", "Impact shorts are underrated. Also wrist guards. The ones I use: [url=https://www.example-skishop.com/protection/impact-shorts]impact shorts[/url]"),
            ("mogul_mike", "Started park at 38. Five years later I can do 3s both ways and small rails. Best decision ever. My kids think I'm cool for about 5 minutes a day."),
            ("dad_on_skis", "That's the dream."),
            ("physio_lena", "Recovery is what's different at 35. More rest between park days, sleep, and don't do 6 park days in a row in your first week."),
            ("tabletop_theo", "Ski the park with your kids. They'll hype you up and teach you a thing or two"),
            ("dad_on_skis", "Update: took a 3-session adult park clinic. Straight airs on the small jumps, 50-50 on the flat box, and a very ugly 180 on a side hit. My kids filmed everything. 10/10."),
            ("parkrat_jules", "Ugly 180 is still a 180. Welcome to the park!", 18),
            ("filmer_ford", "post the clip!! family edit incoming :D"),
        ],
    ),
    # Re-asked questions: members asking what an earlier thread already asked, in their own words, and
    # getting their own replies (`same_as` names the earlier thread). same_questions.json lists the pairs:
    # the eval's retrieval check asks whether a search for one finds the other.
    Thread(
        "One ski for New England hardpack that still floats a little?",
        "maple_max",
        "Just got a job in New Hampshire and my only skis are 112 underfoot fat boys from my Colorado days. Everyone here says they'll be useless on the ice. "
        "I want a single ski for mostly firm groomers and some glades that doesn't die when it actually snows. 6 feet, 180 lbs, strong intermediate. "
        "Trying to keep it under $500. What should I be looking at?",
        [
            ("icecoast_ian", "Welcome to the ice coast. Aim for something between 88 and 95 mm underfoot with camber under the foot and some metal or a stiff wood core. The fat skis can stay in the closet for the two real storms a year."),
            ("vermont_vic", "This gets asked every fall, search the forum for the east coast one-ski threads. Short version: a 90-ish waist, a bit of metal, sharp edges. And go to a demo day before you buy."),
            ("tuningtom", "Whatever you buy, budget for a proper tune. A 1 degree base and 3 degree side edge, kept sharp, matters more on hardpack than which brand is on the topsheet."),
            ("gaper_greg", "buy a race ski and never turn"),
            ("treeski_tina", "For the glades, don't go too long. At 6 foot something around 180 cm is plenty, the trees up here are tight."),
            ("maple_max", "So basically a 90-95 waist, some metal, about 180 cm and a good tune. Any point in going used?"),
            ("icecoast_ian", "Absolutely, the fall ski swaps are full of skis one or two seasons old at half price. Check the edges and bases for core shots and you're good. Spend what you save on the tune.", 6),
            ("maple_max", "Update: found a 93 underfoot with a titanal layer, 179 cm, at a swap for $250. Had it tuned at 3 degrees and it actually holds on the morning ice. Thanks all."),
        ],
        same_as="Best all-mountain ski for the east coast?",
    ),
    Thread(
        "What should my binding release value be?",
        "lapdog_liam",
        "Picked up a pair of skis on marketplace and the bindings are set at 10. I'm 5'7\", 150 lbs, 31, and I ski blues and easy blacks at a steady pace. "
        "That seems way too high? Can I just turn it down myself to something like 6 or is that dumb?",
        [
            ("skibum99", "10 is almost certainly too high for you. The number comes from a chart: weight, height, age, skier type and the sole length of your boot in mm. You sound like a type 2, which puts you somewhere around 5.5 to 6.5 depending on your boot sole length."),
            ("tuningtom", "You can turn the screw yourself, but the number on the scale only means something if the binding is set up for your boot: forward pressure and toe height have to be right. A shop does all of that in ten minutes and checks the release on a machine."),
            ("physio_lena", "Please don't leave it at 10. Bindings that never let go are how a lot of knee injuries happen, especially in slow twisting falls. The chart exists for a reason."),
            ("lapdog_liam", "Where do I find the sole length?"),
            ("bootfitter_dan", "It's molded into the shell on the side of the heel, a number like 289 or 305 mm. Not the size on the tongue, the binding only cares about how long the sole is.", 4),
            ("gaper_greg", "just crank it, prereleasing is worse"),
            ("skibum99", "It really isn't. A prerelease is a yard sale, a binding that doesn't let go is a surgery. Go up half a number at a time only if you actually come out of your skis.", 6),
            ("lapdog_liam", "Took them to the shop, they set me to 5.5 for my 291 mm boots and fixed the forward pressure. Thanks for talking me out of 10."),
        ],
        same_as="First time setting DIN on my own, what number?",
    ),
    Thread(
        "Bruised shins after every ski day",
        "newbie_nora",
        "Second season skiing and the front of my shins is black and blue after every day. It gets so bad I have to stop at lunch. "
        "My boots are old rentals I bought at the end of last season, size 25. I tighten everything as hard as I can because my foot moves around. "
        "Is this just part of skiing or is something wrong?",
        [
            ("bootfitter_dan", "Not normal. If your foot moves around with everything cranked, the boot is too big, and a loose foot slams into the tongue every time you flex. Take the liner out and do a shell fit: foot in the empty shell, toes touching the front, and see how much room there is behind your heel."),
            ("newbie_nora", "Did it, I can get about three fingers behind my heel."),
            ("bootfitter_dan", "Then the shell is probably a full size too big. You want about one finger, 10-15 mm, for a snug recreational fit. No amount of buckling fixes that much space.", 2),
            ("coach_marek", "Also check your stance. If you ski in the backseat you get thrown onto the tongue at the end of every turn. Keep light, steady pressure on the front of the boot instead of banging in and out."),
            ("icecoast_ian", "And wear one pair of thin ski socks. Thick socks or two pairs make a loose fit worse, not better."),
            ("physio_lena", "Give the shins a few days off if they're still sore to touch. Keep skiing on bruised shins and it can drag on for weeks."),
            ("newbie_nora", "Went to a boot fitter: I'm actually a 23.5, now in a narrower boot. Two days in and no shin pain at all. Can't believe I skied a whole season like that."),
        ],
        same_as="Boots killing my shins, is it the boot or me?",
    ),
    Thread(
        "Butter tricks: where do I even start?",
        "ollie_olga",
        "Watching edits of people buttering 5s on the groomers and I want in. I can ski switch and do small 180s off jumps. "
        "Every time I lean onto my tips I catch an edge and eat it. How do you learn to butter without tomahawking?",
        [
            ("butter_queen", "Start without any rotation. Ride straight on a flat green, shift your weight forward until the tails come off the snow, and hold that nose press for a count of three. Then the same on the tails. Spinning comes later."),
            ("parkrat_jules", "The edge catch is almost always from tipping the ski on edge while you lean. Keep the skis completely flat and press with your shins and hips, not by folding at the waist."),
            ("jibjesus", "what skis?? butters on a stiff carving ski are pain. soft twin tips make it 10x easier :cool:"),
            ("ollie_olga", "Pretty stiff all-mountain skis, mounted traditional. Might be part of it.", 3),
            ("parkrat_jules", "Definitely part of it. You can still learn, it just takes more effort. If your bindings have any adjustment, move them forward a bit.", 4),
            ("butter_queen", "Once the presses feel solid: nose butter 180. Press the nose, turn your shoulders, let the tails swing around and ride away switch. Hold the press longer and it becomes a 360."),
            ("steezy_steph", "Film it. You'll see your press is half as big as you think lol"),
            ("ollie_olga", "Flat skis fixed it. Got some wobbly nose butter 180s today on the bunny slope. Thanks!"),
        ],
        same_as="How do I learn nose butters?",
    ),
    Thread(
        "Do I really need an avalanche class to start backcountry skiing?",
        "skintrack_sol",
        "Got touring gear and a beacon for my birthday. My buddy has been touring for a couple of years without ever taking a class and says you just learn it out there. "
        "The classes near me are $350-450 for a weekend. Is it really necessary, or can I watch some videos and go with him?",
        [
            ("avy_anna", "Take the class. A beacon only helps after something went wrong. The class teaches you to read the avalanche forecast, pick terrain that fits the conditions and run a companion rescue, which is what keeps you out of trouble in the first place."),
            ("couloir_cam", "\"Learn it out there\" from someone who never took a class is how groups end up on the wrong slope on the wrong day. Get your buddy to take it with you."),
            ("skintrack_sol", "Are the free online courses enough for now?"),
            ("avy_anna", "They're a good start for the theory, but a beacon search under stress is something you have to practice with your hands. Do the online part now and the field course before you leave the resort.", 3),
            ("tele_ted", "Meanwhile, skin up at a resort that allows uphill. You learn transitions and how your gear works without any avalanche terrain."),
            ("couloir_cam", "And do beacon drills with your buddy in a park. Bury one in a backpack and time each other. Ten minutes every couple of weekends."),
            ("skintrack_sol", "Booked the weekend course for January and my buddy signed up too. Thanks for the push."),
        ],
        same_as="Avalanche course: worth it before my first touring season?",
    ),
    Thread(
        "Want to start waxing my own skis, what kit?",
        "frugal_fran",
        "The shop charges $35 a wax and I ski about 25 days a season. What do I actually need to buy to wax at home? "
        "Do I need a special wax iron or will a normal iron do? And how often should I wax?",
        [
            ("tuningtom", "Basics: a wax iron, universal hydrocarbon wax, a plastic scraper, a nylon brush and something to hold the skis still. A real wax iron holds its temperature, but an old travel iron without steam holes works if you keep it moving."),
            ("corn_snow_carl", "Drip the wax on, iron it in with slow passes tip to tail, let it cool completely (overnight is best), scrape until almost nothing is left on the surface, then brush. The wax that matters is what soaked into the base."),
            ("icecoast_ian", "If the iron smokes, it's too hot. You want the wax to melt smoothly, not burn."),
            ("frugal_fran", "Universal wax or temperature wax?"),
            ("tuningtom", "Universal covers almost all recreational skiing. Cold-temperature wax only pays off on really cold days, and skip fluoro entirely.", 4),
            ("tuningtom", "How often: every 3-5 days on snow, or as soon as the base looks white and dry along the edges."),
            ("frugal_fran", "Bought the iron and a bar of universal, did my first wax on the kitchen table. My partner is less excited than I am but the skis glide so much better :D"),
        ],
        same_as="Hot wax at home: what iron and wax do I need?",
    ),
    Thread(
        "Back to skiing after ACL surgery: how long did you wait?",
        "kneebrace_kim",
        "Had ACL reconstruction (hamstring graft) in June after a fall in the trees. I'm 4 months out, walking normally, doing PT twice a week. "
        "My surgeon wants me to wait until next season, but I'd be at 7 months in January. How long did you all wait before skiing again?",
        [
            ("physio_lena", "General info, not advice for your knee: the graft is at its weakest while it remodels, and people who go back before about 9 months re-injure a lot more often. Feeling great at 4 months is normal, it doesn't mean the graft is ready."),
            ("couloir_cam", "I went back at 7 months and tore it again the same season. The second rehab was way worse than the first. Wait the full time."),
            ("physio_lena", "Ask your PT about return-to-sport testing too: hop tests, quad and hamstring strength at 90% or more of the other leg, agility drills. Use the tests and the calendar together."),
            ("kneebrace_kim", "Did you wear a brace when you went back?"),
            ("physio_lena", "Some people like one for confidence, but it won't make up for strength. If you get one, have it fitted so it sits right with your boots.", 4),
            ("coach_marek", "First days back: easy groomers in good visibility, short days, stop before you're tired. Leave the trees and bumps for later."),
            ("mogul_mike", "Waited 10 months. First run back was slow and emotional and totally worth it."),
            ("kneebrace_kim", "OK, I'm going to sit this season out and do the testing in the spring. Thanks for being honest."),
        ],
        same_as="ACL reconstruction, when can I ski again?",
    ),
    Thread(
        "Best goggle tint for grey and foggy days?",
        "whiteout_walt",
        "On cloudy days I can't see a thing, every bump surprises me. I own one pair of goggles with a dark blue mirror lens. "
        "Which lens should I get for bad visibility? Is a photochromic lens a good all-rounder?",
        [
            ("whistler_kat", "Check the VLT, how much light the lens lets through. Dark mirrored lenses are around 10%. For storms and fog you want 50-70%, in a rose, yellow or amber tint that adds contrast."),
            ("frostbite_felix", "Photochromic is a decent one-lens compromise, but on really dark storm days a proper low-light lens beats it. Goggles with swappable lenses are the way to go."),
            ("skibum99", "Don't wipe the inside when it fogs, you'll wreck the anti-fog coating. And keep them off your sweaty forehead."),
            ("treeski_tina", "Also, when the light is flat, go ski the trees. They give you something to see the snow against."),
            ("whiteout_walt", "Mine says VLT 9% on the box lol. Ordered a rose lens with 55%."),
            ("whiteout_walt", "Used the new lens in a storm today and could actually see the bumps. Massive difference, thanks."),
        ],
        same_as="Goggle lens for flat light?",
    ),
    Thread(
        "How do you ski moguls without getting wrecked?",
        "burnout_ben",
        "Fine on any groomed run, but a bump run wipes me out in seconds. My thighs are on fire, I get thrown back and end up sideslipping the rest. "
        "How do people ski bumps top to bottom?",
        [
            ("mogul_mike", "Turn on the top of the bump, not in the trough. On top the tips and tails are in the air and the skis pivot easily. Then let your legs fold as you go over and stretch them into the next trough, like a shock absorber."),
            ("coach_marek", "Eyes a few bumps ahead and hands out in front. If your pole plant pulls your shoulders back you end up in the backseat, and your thighs do all the work."),
            ("burnout_ben", "I think I've been turning in the troughs and then hitting the next bump face first.", 1),
            ("mogul_mike", "That's what kills your legs. Start on an easy bump run with soft snow, do a few turns, stop, and go again. Speed comes later.", 3),
            ("physio_lena", "Some leg work in the off season helps: squats, lunges and jumping drills. Bumps are basically intervals."),
            ("burnout_ben", "Turning on top of the bumps made it so much easier. Still stopping every few turns but I'm not dying anymore."),
        ],
        same_as="Moguls: my legs die after three bumps",
    ),
    Thread(
        "Feet freezing in ski boots, what actually works?",
        "chilly_chen",
        "By the second chair my toes are numb and by lunch they hurt, even on mild days. I've tried thicker socks and it's worse if anything. "
        "Are boot heaters the answer or am I missing something?",
        [
            ("bootfitter_dan", "Thicker socks make it worse because they squeeze the foot and cut off blood flow. Same if you crank the forefoot buckles. How tight do you do up the buckles over your toes?"),
            ("chilly_chen", "Pretty tight, my heel slides otherwise.", 1),
            ("bootfitter_dan", "That's likely your problem. Leave the two lower buckles loose, hold the heel with the upper buckles and the power strap, and if it still lifts, have a fitter add heel padding. Heaters work, but they cover up a fit problem.", 2),
            ("frostbite_felix", "Dry the liners overnight. Even a little sweat left from yesterday makes today's toes cold."),
            ("icecoast_ian", "On the truly cold days, neoprene boot covers and stick-on toe warmers are cheap and they work."),
            ("chilly_chen", "Thin socks and loose lower buckles today, and my toes were warm until the last chair. Booked a fitter for the heel."),
        ],
        same_as="Cold toes: are heated socks worth it?",
    ),
    Thread(
        "Skins glued together and impossible to peel apart",
        "uphill_ulla",
        "New skins this season and at every transition I fight with them, the glue sticks so hard I'm scared of tearing them. "
        "At home I fold them in half, glue side to glue side. Is something wrong with them?",
        [
            ("avy_anna", "Nothing wrong, new glue is just aggressive. Peel them apart slowly starting at one end instead of yanking. For storing them at home, use the skin savers or cheat sheets that came in the box."),
            ("couloir_cam", "Keep them inside your jacket between laps. Warm glue comes apart much more easily than cold glue."),
            ("tele_ted", "If they still misbehave after a season or two, the glue is getting old. Then you re-glue them or buy new ones: old glue gums up and leaves residue on the base."),
            ("uphill_ulla", "Didn't even know what the mesh sheets were for, thought they were packaging lol", 1),
            ("uphill_ulla", "Skins in my jacket and slow peeling: transitions went smoothly today. Thanks!"),
        ],
        same_as="Climbing skins sticking to themselves",
    ),
    Thread(
        "Putting the skis away for the off season: what do I do?",
        "springslush_sue",
        "Season's over for me. Anything I should do to my skis and boots before they sit in the garage until November?",
        [
            ("tuningtom", "Put on a thick layer of storage wax and leave it unscraped. It keeps the base from drying out and the edges from rusting. Scrape and brush it off before your first day next season."),
            ("tuningtom", "Dry everything first, edges too. Then somewhere cool and dry. A garage is fine only if it doesn't get damp or roasting hot."),
            ("bootfitter_dan", "Boots: dry the liners completely and buckle the shells loosely so they keep their shape over the summer."),
            ("springslush_sue", "Do I need to lower the binding settings?", 1),
            ("tuningtom", "Modern bindings don't need it. If you do it anyway, remember to set them back correctly in the fall.", 4),
            ("avy_anna", "Beacon batteries out before it goes in the closet!"),
        ],
        same_as="How do you store skis over the summer?",
    ),
    Thread(
        "First Japan powder trip: Hokkaido or Nagano?",
        "deepday_dom",
        "Booking two weeks in Japan for early February. My wife and I love tree skiing and powder and we're not into partying. "
        "Everyone says Niseko but I keep hearing Hakuba is more interesting. Where would you go for a first trip?",
        [
            ("japow_jun", "For deep snow and trees on a first trip, Hokkaido. Niseko has the most reliable snow and it's easy to get around in English, but it's busy and expensive. Hakuba has bigger, steeper terrain and feels more like Japan, but it can rain at the base in a warm spell."),
            ("powderhound22", "Hokkaido. The snow there in February is the lightest I've ever skied. Base in Niseko and take day trips to Rusutsu for the trees."),
            ("alpsgoat", "Hakuba is great but I'd keep it for a second trip. We got three days of rain before it finally dumped."),
            ("deepday_dom", "Do we need a car?"),
            ("japow_jun", "Not in Niseko, the shuttle buses between the villages work fine. In Hakuba a car helps a lot to move between resorts. Either way, respect the gates and the off-piste rules.", 4),
            ("apres_andy", "Convenience store breakfast before first chair. Trust me."),
            ("deepday_dom", "Booked Niseko with a few days at Rusutsu. Thanks everyone."),
        ],
        same_as="Japan trip: Niseko or Hakuba?",
    ),
    Thread(
        "Checking a second-hand pair of skis before buying",
        "bargain_bea",
        "Someone near me is selling three season old skis with bindings for $200. I've never bought used gear. "
        "What should I look at when I go see them so I don't get ripped off?",
        [
            ("tuningtom", "Flip them over and look at the bases for core shots, the deep gouges where you see the core. Check the edges for cracks and rust, the sidewalls near the tips and tails for delamination, and press them base to base to see that the camber springs back the same on both."),
            ("bootfitter_dan", "Take your boots with you and click in. If the bindings don't adjust to your boot sole length you're looking at a remount, which adds cost and holes."),
            ("skibum99", "Look up the binding model too. Shops won't adjust bindings that are too old to be on the indemnified list."),
            ("bargain_bea", "There's a small gouge near the tail, is that a dealbreaker?"),
            ("tuningtom", "A small core shot near the tail is an easy shop repair. Big ones underfoot or cracked edges are where I'd walk away.", 4),
            ("gaper_greg", "offer 150 and see what happens"),
            ("bargain_bea", "Bought them for $180. The bindings fit my boots and the shop filled the gouge for $20. Thanks!"),
        ],
        same_as="Buying used skis: what should I check?",
    ),
    Thread(
        "Getting my legs ready for ski season",
        "couch_carlos",
        "Six weeks until opening day and I've done zero exercise since spring. What workouts actually help for skiing? "
        "I don't want to be dead after two runs or hurt myself. I can get to a gym three times a week.",
        [
            ("physio_lena", "Six weeks is plenty to notice a difference. Two or three strength days: squats, lunges or split squats, single-leg deadlifts, step-ups, plus hamstring curls and planks. Strong hamstrings take load off the ACL."),
            ("coach_marek", "Add balance work: single-leg stands, single-leg squats, anything that makes your ankles and hips work to keep you upright."),
            ("couch_carlos", "Should I just do wall sits? That's what everyone at work says.", 1),
            ("physio_lena", "Wall sits only train holding still. Skiing is absorbing and extending, so do tempo squats and practice landing small jumps softly with your knees over your toes.", 3),
            ("mogul_mike", "Do some interval cardio on a bike or a rower. Your legs will thank you on the first bump run."),
            ("physio_lena", "Start light and build up over the weeks. Being a bit sore is fine, getting hurt before the season even starts is not."),
            ("couch_carlos", "Doing two strength days and one bike interval day a week now. The stairs at work feel easier already."),
        ],
        same_as="Pre-season fitness program?",
    ),
]
# fmt: on


# ---------------------------------------------------------------------------------------------------
# Model: thread ids, slugs, dates, post ids, pages
# ---------------------------------------------------------------------------------------------------


@dataclass
class Post:
    author: str
    text: str
    quoted: int | None  # index (in the thread) of the post this one quotes
    date: dt.datetime
    index: int  # position in the thread, 0 = opening post
    post_id: int = 0
    edited: dt.datetime | None = None
    likes: int = 0
    accepted: bool = False


@dataclass
class BuiltThread:
    thread_id: int
    title: str
    slug: str
    starter: str
    mod_note: str | None
    posts: list[Post] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"/threads/{self.thread_id}-{self.slug}/"

    @property
    def pages(self) -> int:
        return -(-len(self.posts) // POSTS_PER_PAGE)

    def page_url(self, page: int) -> str:
        return self.url if page == 1 else f"{self.url}page-{page}.html"

    def page_file(self, page: int) -> str:
        return f"threads/{self.thread_id}-{self.slug}/" + ("index.html" if page == 1 else f"page-{page}.html")


def slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    return "-".join(re.findall(r"[a-z0-9]+", ascii_title.lower().replace("'", "")))


def reply_gap(rng: random.Random, text: str) -> dt.timedelta:
    """Time between two posts of a thread: mostly minutes to hours, sometimes days (bumps wait longest)."""
    if text.strip().lower() == "bump":
        minutes = rng.uniform(2 * 1440, 6 * 1440)
    else:
        roll = rng.random()
        if roll < 0.65:
            minutes = rng.uniform(3, 240)
        elif roll < 0.94:
            minutes = rng.uniform(240, 36 * 60)
        else:
            minutes = rng.uniform(3 * 1440, 10 * 1440)
    return dt.timedelta(seconds=max(60, int(minutes * 60)))


def edit_time(thread_id: int, post: Post) -> dt.datetime | None:
    """About one post in EDIT_ONE_IN (never a one-liner) gets edited a little while after posting."""
    digest = hashlib.sha256(f"edit:{thread_id}:{post.index}".encode()).digest()
    if len(plain_text(post.text)) < 25 or int.from_bytes(digest[:4], "big") % EDIT_ONE_IN:
        return None
    return post.date + dt.timedelta(seconds=90 + int.from_bytes(digest[4:8], "big") % (4 * 3600))


# Members whose advice the community trusts, and the one whose advice it does not: their replies draw
# more (or fewer) likes, as on any real forum.
TRUSTED = {
    "bootfitter_dan",
    "tuningtom",
    "physio_lena",
    "avy_anna",
    "coach_marek",
    "couloir_cam",
    "icecoast_ian",
}
DISTRUSTED = {"gaper_greg"}
THANKS = re.compile(r"\b(thanks|thank you|ended up|update|took it)\b", re.IGNORECASE)


def post_likes(thread_id: int, post: Post, starter: str, times_quoted: int) -> int:
    """Likes: a reply with substance gets more, a trusted member's more still, and being quoted counts;
    one-liners, the asker's own follow-ups and bad advice get few."""
    digest = hashlib.sha256(f"likes:{thread_id}:{post.index}".encode()).digest()
    jitter = digest[0] % 3
    words = len(plain_text(post.text).split())
    if post.index == 0:
        return 1 + jitter + min(words // 20, 4)
    if post.author in DISTRUSTED or "{{mod:" in post.text or words < 5:
        return digest[1] % 2
    likes = min(words // 10, 8) + jitter + 2 * times_quoted
    if post.author in TRUSTED:
        likes += 3
    if post.author == starter:
        likes = min(likes // 2, 2)
    return likes


def give_likes(thread: BuiltThread) -> None:
    """Like counts for every post; where the asker came back to thank or report, the reply they found
    best (the most liked one from someone else before that) is marked accepted."""
    quoted = [0] * len(thread.posts)
    for post in thread.posts:
        if post.quoted is not None:
            quoted[post.quoted] += 1
    for post in thread.posts:
        post.likes = post_likes(thread.thread_id, post, thread.starter, quoted[post.index])
    closing = [
        post for post in thread.posts[2:] if post.author == thread.starter and THANKS.search(post.text)
    ]
    if closing:
        answers = [
            post
            for post in thread.posts[1 : closing[-1].index]
            if post.author not in (thread.starter, *DISTRUSTED)
        ]
        if answers:
            max(answers, key=lambda post: (post.likes, -post.index)).accepted = True


def validate(threads: list[Thread]) -> None:
    titles: set[str] = set()
    for thread in threads:
        if thread.same_as is not None and thread.same_as not in titles:
            raise ValueError(f"{thread.title!r}: same_as {thread.same_as!r} is not an earlier thread")
        titles.add(thread.title)
        if not 3 <= len(thread.replies) <= 20:
            raise ValueError(f"{thread.title!r}: {len(thread.replies)} replies, want 3..20")
        for number, reply in enumerate(thread.replies, start=1):
            if len(reply) == 3 and not 0 <= reply[2] < number:
                raise ValueError(f"{thread.title!r} reply {number} quotes post {reply[2]}")
            if not re.fullmatch(r"[a-z0-9_]+", reply[0]):
                raise ValueError(f"bad username {reply[0]!r}")


def build(threads: list[Thread]) -> list[BuiltThread]:
    """Give threads ids, slugs and dates; number all posts forum-wide in posting order."""
    validate(threads)
    built = []
    for number, thread in enumerate(threads):
        thread_id = FIRST_THREAD_ID + number
        rng = random.Random(thread_id)
        day = FIRST_DAY + dt.timedelta(days=int(number * DAYS_BETWEEN_THREADS) + rng.randint(0, 9))
        date = day + dt.timedelta(seconds=rng.randint(6 * 3600, 86399))
        bt = BuiltThread(thread_id, thread.title, slugify(thread.title), thread.starter, thread.mod_note)
        bt.posts.append(Post(thread.starter, thread.text, None, date, 0))
        for index, reply in enumerate(thread.replies, start=1):
            date = date + reply_gap(rng, reply[1])
            bt.posts.append(Post(reply[0], reply[1], reply[2] if len(reply) == 3 else None, date, index))
        for post in bt.posts:
            post.edited = edit_time(thread_id, post)
        give_likes(bt)
        built.append(bt)
    everything = sorted(
        ((post.date, bt.thread_id, post.index, post) for bt in built for post in bt.posts),
        key=lambda t: t[:3],
    )
    for offset, (_, _, _, post) in enumerate(everything):
        post.post_id = FIRST_POST_ID + offset
    last = everything[-1][0]
    if everything[0][0].year < 2019 or last.year > LAST_YEAR:
        raise ValueError(f"dates out of range: {everything[0][0]} .. {last}")
    return built


# ---------------------------------------------------------------------------------------------------
# Text: the mini-markup of post texts, quotes, dates
# ---------------------------------------------------------------------------------------------------

MOD_NOTE = re.compile(r"\{\{mod:(.+?)\}\}")
ALLOWED_TAGS = [
    (re.compile(r"&lt;(/?)([bi])&gt;"), r"<\1\2>"),
    (re.compile(r"&lt;a href=(https?://\S+?)&gt;"), r'<a href="\1" rel="nofollow">'),
    (re.compile(r"&lt;/a&gt;"), "</a>"),
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def esc(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def markup(text: str) -> str:
    """Post mini-markup -> HTML (see the module docstring)."""
    html = esc(text)
    for pattern, replacement in ALLOWED_TAGS:
        html = pattern.sub(replacement, html)
    html = MOD_NOTE.sub(lambda m: f'<div class="mod-note">{m.group(1)}</div>', html)
    return html.replace("\n", "<br>\n")


def plain_text(text: str) -> str:
    text = MOD_NOTE.sub("", text)
    text = re.sub(r"</?[bi]>|<a href=\S+?>|</a>", "", text)
    return " ".join(text.split())


def shorten(text: str, limit: int = 160) -> str:
    """What a poster keeps of a quoted post: the whole of a short one, else its first sentence(s)."""
    if len(text) <= limit:
        return text
    for match in re.finditer(r"[.!?](?=\s)", text):
        if match.end() > limit + 40:
            break
        if match.end() >= 40:
            return text[: match.end()]
    return text[: text.rfind(" ", 0, limit)].rstrip(",;:") + "..."


def human_date(when: dt.datetime) -> str:
    """newschoolers style: Jan 14th 2021 at 9:58:47pm"""
    day = when.day
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    hour = when.hour % 12 or 12
    return f"{MONTHS[when.month - 1]} {day}{suffix} {when.year} at {hour}:{when:%M:%S}{'am' if when.hour < 12 else 'pm'}"


def iso_date(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def time_tag(when: dt.datetime, css_class: str) -> str:
    return f'<time class="{css_class}" datetime="{iso_date(when)}">{human_date(when)}</time>'


# ---------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------

CSS = """body{font-family:Verdana,Arial,sans-serif;font-size:13px;margin:0;background:#e9eef2;color:#222}
.site-header{background:#12324a;color:#fff;padding:10px 20px}.site-header a{color:#fff;margin-right:14px}
.logo{font-size:22px;font-weight:bold;text-decoration:none}.layout{display:flex;gap:16px;padding:16px 20px}
.content{flex:1;background:#fff;padding:12px 18px}.sidebar{width:230px}.widget{background:#fff;padding:8px 10px;margin-bottom:12px}
.thread-row{list-style:none;border-bottom:1px solid #dde;padding:6px 0}.thread-row span{margin-left:10px;color:#666}
.post{border:1px solid #ccd;margin:10px 0;padding:8px 10px}.post-meta{background:#f1f4f7;padding:4px 6px;margin-bottom:6px}
.quote{background:#f7f7ef;border-left:3px solid #bbb;margin:4px 0 8px;padding:4px 8px}.quote-author{font-weight:bold}
.signature{border-top:1px dashed #ccc;margin-top:8px;padding-top:4px;color:#777;font-size:11px}
.mod-note{background:#fff3cd;padding:3px 6px;margin-bottom:6px;font-style:italic}.site-footer{padding:14px 20px;color:#555;font-size:11px}"""


def page(title: str, crumbs: list[tuple[str, str | None]], content: str, key: str) -> str:
    """A full forum page: header/nav, breadcrumbs, main content, sidebar and footer around `content`."""
    digest = hashlib.sha256(key.encode()).digest()
    online_members, online_guests = 8 + digest[0] % 40, 50 + digest[1] % 200
    crumb_html = " &rsaquo; ".join(
        f'<a href="{href}">{label}</a>' if href else f"<span>{label}</span>" for label, href in crumbs
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} | {SITE_NAME}</title>
<style>
{CSS}
</style>
</head>
<body>
<header class="site-header" id="top">
  <a class="logo" href="/">{SITE_NAME}</a>
  <nav class="main-nav"><a href="/">Home</a> <a href="/forums/{FORUM_SLUG}/">Forums</a> <a href="/members/">Members</a></nav>
  <div class="login-box">Not logged in. <a href="/members/login/">Log in</a> or <a href="/members/register/">Sign up</a></div>
</header>
<div class="breadcrumbs">{crumb_html}</div>
<div class="layout">
<main class="content">
{content}
</main>
<aside class="sidebar">
  <div class="widget"><h3>Forum rules</h3><p>Be stoke-positive. No gear sales in the discussion forum. Search before you post &amp; keep it friendly.</p></div>
  <div class="widget ad"><span class="ad-label">Sponsored</span> <a href="https://www.example-skishop.com/?utm_source=sidehit&amp;utm_medium=sidebar">Season-end sale: 30% off wax &amp; tuning kits</a></div>
  <div class="widget online">Online now: {online_members} members, {online_guests} guests</div>
</aside>
</div>
<footer class="site-footer">
  <p>{SITE_NAME} is a made-up freeski community written for the forumtune demo; all members and posts are fictional.</p>
  <p>&copy; 2019&ndash;{LAST_YEAR} {SITE_NAME} &middot; <a href="/">Home</a> &middot; <a href="#top">Back to top</a></p>
</footer>
</body>
</html>
"""


def pagination(current: int, total: int, url_for) -> str:
    parts = []
    if current > 1:
        parts.append(f'<a class="page-prev" href="{url_for(current - 1)}">&laquo; Prev</a>')
    parts.append(f'<span class="page-current">{current}</span>')
    if current < total:
        parts.append(f'<a class="page-next" href="{url_for(current + 1)}">Next &raquo;</a>')
    return '<nav class="pagination">' + " ".join(parts) + "</nav>"


def quote_html(thread: BuiltThread, post: Post, depth: int = 1) -> str:
    """The quote a reply carries of an earlier post; a quoting post's own quote nests, two deep at most."""
    inner = ""
    if post.quoted is not None and depth < 2:
        inner = quote_html(thread, thread.posts[post.quoted], depth + 1) + " "
    words = markup(shorten(plain_text(post.text)))
    return f'<blockquote class="quote"><span class="quote-author">{post.author} wrote:</span> {inner}{words}</blockquote>'


def post_html(thread: BuiltThread, post: Post) -> str:
    body = []
    if post.index == 0 and thread.mod_note:
        body.append(f'<div class="mod-note">{esc(thread.mod_note)}</div>')
    if post.quoted is not None:
        body.append(quote_html(thread, thread.posts[post.quoted]))
    text = markup(post.text)
    if post.edited:
        text += f"<br><br>\n**This post was edited on {human_date(post.edited)}"
    body.append(text)
    signature = SIGNATURES.get(post.author)
    sig_html = f'\n  <div class="signature">{markup(signature)}</div>' if signature else ""
    body_html = "\n".join(body).replace("\n", "\n    ")
    accepted = '\n    <span class="post-accepted">Accepted answer</span>' if post.accepted else ""
    return f"""<div class="post" id="post-{post.post_id}" data-post-id="{post.post_id}">
  <div class="post-meta">
    <a class="post-author" href="/members/{post.author}/">{post.author}</a>
    {time_tag(post.date, "post-date")}
    <a class="post-permalink" href="#post-{post.post_id}">#{post.index + 1}</a>
    <span class="post-likes" title="Likes">{post.likes} {"like" if post.likes == 1 else "likes"}</span>{accepted}
  </div>
  <div class="post-body">
    {body_html}
  </div>{sig_html}
</div>"""


def thread_page(thread: BuiltThread, number: int) -> str:
    posts = thread.posts[(number - 1) * POSTS_PER_PAGE : number * POSTS_PER_PAGE]
    replies = len(thread.posts) - 1
    content = "\n".join(
        [
            f'<h1 class="thread-title">{esc(thread.title)}</h1>',
            (
                f'<div class="thread-info">Started by <a href="/members/{thread.starter}/">{thread.starter}</a>'
                f" &middot; {replies} replies &middot; page {number} of {thread.pages}</div>"
            ),
            *(post_html(thread, post) for post in posts),
            pagination(number, thread.pages, thread.page_url),
            '<div class="reply-box">You must <a href="/members/login/">log in</a> to reply to this thread.</div>',
        ]
    )
    title = esc(thread.title) + (f" - Page {number}" if number > 1 else "")
    crumbs = [(SITE_NAME, "/"), (FORUM_NAME, f"/forums/{FORUM_SLUG}/"), (esc(thread.title), None)]
    return page(title, crumbs, content, thread.page_file(number))


def thread_row(thread: BuiltThread) -> str:
    last = thread.posts[-1]
    return f"""  <li class="thread-row" data-thread-id="{thread.thread_id}">
    <a class="thread-link" href="{thread.url}">{esc(thread.title)}</a>
    <span class="thread-starter">{thread.starter}</span>
    <span class="thread-replies">{len(thread.posts) - 1}</span>
    <span class="thread-pages">{thread.pages}</span>
    <span class="thread-last">last post by {last.author}, {time_tag(last.date, "thread-last-date")}</span>
  </li>"""


def by_activity(threads: list[BuiltThread]) -> list[BuiltThread]:
    return sorted(threads, key=lambda t: (t.posts[-1].date, t.thread_id), reverse=True)


def forum_list_url(number: int) -> str:
    return f"/forums/{FORUM_SLUG}/" if number == 1 else f"/forums/{FORUM_SLUG}/page-{number}.html"


def forum_page(threads: list[BuiltThread], number: int, total: int) -> str:
    rows = "\n".join(thread_row(t) for t in threads)
    content = f"""<h1 class="forum-title">{FORUM_NAME}</h1>
<p class="forum-description">Gear, technique, park, backcountry and travel. Anything on two planks.</p>
<div class="announcement"><b>Welcome!</b> Read the forum rules before posting. Buy/sell threads go in the classifieds.</div>
<ul class="thread-list">
{rows}
</ul>
{pagination(number, total, forum_list_url)}"""
    title = FORUM_NAME + (f" - Page {number}" if number > 1 else "")
    return page(title, [(SITE_NAME, "/"), (FORUM_NAME, None)], content, f"forum-{number}")


def home_page(threads: list[BuiltThread]) -> str:
    posts = sum(len(t.posts) for t in threads)
    latest = "\n".join(
        f'  <li><a href="{t.url}">{esc(t.title)}</a> by {t.posts[-1].author}</li>'
        for t in by_activity(threads)[:5]
    )
    content = f"""<h1>Welcome to {SITE_NAME}</h1>
<p>The freeski community: park, pow, touring and everything in between.</p>
<div class="forum-box">
  <h2><a href="/forums/{FORUM_SLUG}/">{FORUM_NAME}</a></h2>
  <p>Gear, technique, park, backcountry and travel.</p>
  <span class="forum-stats">{len(threads)} threads &middot; {posts} posts</span>
</div>
<div class="forum-box archived">
  <h2>Gear Talk (archived)</h2>
  <p>Merged into {FORUM_NAME}.</p>
</div>
<h2>Latest activity</h2>
<ul class="latest">
{latest}
</ul>"""
    return page("Home", [(SITE_NAME, None)], content, "home")


def render_site(threads: list[BuiltThread]) -> dict[str, str]:
    """Every file of the web root, by path relative to it."""
    files = {"robots.txt": ROBOTS_TXT, "index.html": home_page(threads)}
    ordered = by_activity(threads)
    total = -(-len(ordered) // THREADS_PER_PAGE)
    for number in range(1, total + 1):
        chunk = ordered[(number - 1) * THREADS_PER_PAGE : number * THREADS_PER_PAGE]
        name = "index.html" if number == 1 else f"page-{number}.html"
        files[f"forums/{FORUM_SLUG}/{name}"] = forum_page(chunk, number, total)
    for thread in threads:
        for number in range(1, thread.pages + 1):
            files[thread.page_file(number)] = thread_page(thread, number)
    return files


def same_question_groups(threads: list[BuiltThread]) -> str:
    """same_questions.json: the URLs of threads that ask the same question, one group per question."""
    url_of = {thread.title: thread.url for thread in threads}
    groups: dict[str, list[str]] = {}
    for source, thread in zip(THREADS, threads):
        if source.same_as is not None:
            groups.setdefault(source.same_as, [url_of[source.same_as]]).append(thread.url)
    labels = {
        "about": "Threads of the demo forum that ask the same question: a member asking again, in other "
        "words, what an earlier thread asked. Written by scripts/make_demo_forum.py; eval.same_questions "
        "reads it to check that retrieval finds one thread of a group from another's question.",
        "groups": list(groups.values()),
    }
    return json.dumps(labels, indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="web root to (re)create")
    out = parser.parse_args(argv).out
    threads = build(THREADS)
    files = render_site(threads)
    files[SAME_QUESTIONS] = same_question_groups(threads)
    if out.exists():
        if any(out.iterdir()) and not (out / "robots.txt").exists():
            raise SystemExit(f"{out} is not empty and does not look like a demo forum; not deleting it")
        shutil.rmtree(out)
    for rel, text in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    posts = sum(len(t.replies) + 1 for t in THREADS)
    groups = sum(source.same_as is not None for source in THREADS)
    print(
        f"wrote {len(files)} files to {out}: {len(THREADS)} threads ({groups} re-asking one), {posts} posts"
    )


if __name__ == "__main__":
    main()
